package verify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Field numbers of onnx.proto that the signature reader follows.
const (
	fieldModelGraph             = 7  // ModelProto.graph
	fieldGraphInitializer       = 5  // GraphProto.initializer
	fieldGraphInput             = 11 // GraphProto.input
	fieldGraphOutput            = 12 // GraphProto.output
	fieldGraphSparseInitializer = 15 // GraphProto.sparse_initializer
	fieldTensorName             = 8  // TensorProto.name
	fieldSparseValues           = 1  // SparseTensorProto.values
)

// signature is what a model feeds on and returns: the main graph's inputs that no
// initializer backs (the ones ONNX Runtime asks for), and its outputs.
type signature struct {
	inputs  []*onnxpb.ValueInfoProto
	outputs []*onnxpb.ValueInfoProto
}

// errNotModel marks protobuf that does not parse, or parses to something without a graph.
var errNotModel = errors.New("not an ONNX model")

// readSignature reads the graph inputs and outputs of the model file at path. It walks the
// protobuf fields from the file without loading the rest, so initializer data, however
// large, is skipped rather than read.
func readSignature(path string) (*signature, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the message
		}
		return nil, fmt.Errorf("verify: model %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("verify: model %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("verify: model %s: not a regular file", path)
	}

	r := wireReader{r: f}
	var inputs, outputs []*onnxpb.ValueInfoProto
	initialized := map[string]bool{}
	graphs := 0
	err = r.fields(0, fi.Size(), func(num protowire.Number, start, end int64) error {
		if num != fieldModelGraph {
			return nil
		}
		graphs++
		return r.fields(start, end, func(num protowire.Number, start, end int64) error {
			switch num {
			case fieldGraphInput, fieldGraphOutput:
				vi := &onnxpb.ValueInfoProto{}
				if err := r.message(start, end, vi); err != nil {
					return err
				}
				if num == fieldGraphInput {
					inputs = append(inputs, vi)
				} else {
					outputs = append(outputs, vi)
				}
			case fieldGraphInitializer:
				name, err := r.tensorName(start, end)
				if err != nil {
					return err
				}
				initialized[name] = true
			case fieldGraphSparseInitializer:
				return r.fields(start, end, func(num protowire.Number, start, end int64) error {
					if num != fieldSparseValues {
						return nil
					}
					name, err := r.tensorName(start, end)
					if err != nil {
						return err
					}
					initialized[name] = true
					return nil
				})
			}
			return nil
		})
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("verify: model %s: %w", path, err)
	case graphs == 0:
		return nil, fmt.Errorf("verify: model %s: no graph: %w", path, errNotModel)
	}

	s := &signature{outputs: outputs}
	for _, vi := range inputs {
		if !initialized[vi.GetName()] {
			s.inputs = append(s.inputs, vi)
		}
	}
	return s, nil
}

// wireReader walks protobuf fields in a file by offset, reading only the bytes it is asked for.
type wireReader struct {
	r io.ReaderAt
}

// fields calls fn for each length-delimited field in [start, end), with the bounds of the
// field's payload. Other fields are skipped; groups, and fields that run past end, make the
// bytes not a model.
func (w wireReader) fields(start, end int64, fn func(num protowire.Number, start, end int64) error) error {
	var head [2 * binary.MaxVarintLen64]byte
	for off := start; off < end; {
		n, err := w.r.ReadAt(head[:min(int64(len(head)), end-off)], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		b := head[:n]
		num, typ, tn := protowire.ConsumeTag(b)
		if tn < 0 {
			return fmt.Errorf("bad field tag at byte %d: %w", off, errNotModel)
		}
		var size int64
		hn := tn
		switch typ {
		case protowire.VarintType:
			_, vn := protowire.ConsumeVarint(b[tn:])
			if vn < 0 {
				return fmt.Errorf("bad varint at byte %d: %w", off, errNotModel)
			}
			hn += vn
		case protowire.Fixed32Type:
			size = 4
		case protowire.Fixed64Type:
			size = 8
		case protowire.BytesType:
			v, vn := protowire.ConsumeVarint(b[tn:])
			if vn < 0 || v > uint64(end-off) {
				return fmt.Errorf("bad length at byte %d: %w", off, errNotModel)
			}
			hn += vn
			size = int64(v)
		default:
			return fmt.Errorf("unexpected wire type %d at byte %d: %w", typ, off, errNotModel)
		}
		payload := off + int64(hn)
		next := payload + size
		if next > end {
			return fmt.Errorf("field %d at byte %d runs past its message: %w", num, off, errNotModel)
		}
		if typ == protowire.BytesType {
			if err := fn(num, payload, next); err != nil {
				return err
			}
		}
		off = next
	}
	return nil
}

// message decodes the bytes in [start, end) into m.
func (w wireReader) message(start, end int64, m proto.Message) error {
	b := make([]byte, end-start)
	if _, err := w.r.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("bad graph input or output at byte %d: %v: %w", start, err, errNotModel)
	}
	return nil
}

// tensorName returns the name of the TensorProto in [start, end) without reading its data.
func (w wireReader) tensorName(start, end int64) (string, error) {
	var name string
	err := w.fields(start, end, func(num protowire.Number, start, end int64) error {
		if num != fieldTensorName {
			return nil
		}
		b := make([]byte, end-start)
		if _, err := w.r.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		name = string(b)
		return nil
	})
	return name, err
}
