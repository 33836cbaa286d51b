package onnxio

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// Field numbers of TensorProto that the codec reads and writes.
const (
	fieldDims         protowire.Number = 1
	fieldFloatData    protowire.Number = 4
	fieldInt32Data    protowire.Number = 5
	fieldRawData      protowire.Number = 9
	fieldDoubleData   protowire.Number = 10
	fieldExternalData protowire.Number = 13
)

// maxDepth bounds message nesting (graphs inside attributes inside graphs ...), so that a
// crafted file cannot exhaust the stack.
const maxDepth = 100

// A frame is one length-delimited record of the encoding: the tag at start, the length
// varint at lenAt, the payload in [payload, end).
type frame struct {
	start, lenAt, payload, end int64
}

// A span is one field record of a TensorProto, tag included: [start, end). For
// length-delimited records the payload starts at payload; for others payload == end.
type span struct {
	num            protowire.Number
	typ            protowire.Type
	start, payload int64
	end            int64
}

// A step addresses one message field from its parent: the field number and, for repeated
// fields, the element index.
type step struct {
	num   protowire.Number
	index int
}

// tensorLoc is where one TensorProto lies in the encoded model.
type tensorLoc struct {
	path   []frame // enclosing records, outermost first; the last is the tensor's own record
	addr   []step  // the same path as field steps, to find the decoded message
	fields []span  // the tensor's top-level field records in file order
}

// raw returns the raw_data record that counts (the last one, as protobuf merges scalars), if any.
func (l *tensorLoc) raw() (span, bool) {
	for i := len(l.fields) - 1; i >= 0; i-- {
		if l.fields[i].num == fieldRawData && l.fields[i].typ == protowire.BytesType {
			return l.fields[i], true
		}
	}
	return span{}, false
}

// records returns the tensor's records of field num, in file order.
func (l *tensorLoc) records(num protowire.Number) []span {
	var out []span
	for _, f := range l.fields {
		if f.num == num {
			out = append(out, f)
		}
	}
	return out
}

var tensorDesc = (&onnxpb.TensorProto{}).ProtoReflect().Descriptor()

// holdsTensors reports, for each message type reachable from ModelProto, whether a TensorProto
// can appear somewhere inside it. The walker descends only into those.
var holdsTensors = func() map[protoreflect.FullName]bool {
	root := (&onnxpb.ModelProto{}).ProtoReflect().Descriptor()
	all := map[protoreflect.FullName]protoreflect.MessageDescriptor{}
	var collect func(md protoreflect.MessageDescriptor)
	collect = func(md protoreflect.MessageDescriptor) {
		if _, ok := all[md.FullName()]; ok {
			return
		}
		all[md.FullName()] = md
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			if fd := fields.Get(i); fd.Message() != nil {
				collect(fd.Message())
			}
		}
	}
	collect(root)
	holds := map[protoreflect.FullName]bool{tensorDesc.FullName(): true}
	for changed := true; changed; {
		changed = false
		for name, md := range all {
			if holds[name] {
				continue
			}
			fields := md.Fields()
			for i := 0; i < fields.Len(); i++ {
				if fd := fields.Get(i); fd.Message() != nil && holds[fd.Message().FullName()] {
					holds[name] = true
					changed = true
					break
				}
			}
		}
	}
	return holds
}()

// index walks an encoded ModelProto and returns the location of every TensorProto in it,
// at any depth (initializers, Constant values, attribute tensors, subgraphs, functions,
// sparse tensors, training info), in file order. It checks the wire format of every record
// it passes, and refuses a message-typed singular field that holds tensors and appears more
// than once (protobuf would merge the two, so no single location describes the result).
func index(data []byte) ([]*tensorLoc, error) {
	w := walker{data: data}
	md := (&onnxpb.ModelProto{}).ProtoReflect().Descriptor()
	if err := w.message(0, int64(len(data)), md, nil, nil, 0); err != nil {
		return nil, err
	}
	return w.tensors, nil
}

type walker struct {
	data    []byte
	tensors []*tensorLoc
}

func (w *walker) message(from, to int64, md protoreflect.MessageDescriptor, path []frame, addr []step, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: messages nested more than %d deep at byte %d", ErrMalformed, maxDepth, from)
	}
	isTensor := md.FullName() == tensorDesc.FullName()
	var fields []span
	counts := map[protowire.Number]int{}
	b := w.data[from:to]
	for off := int64(0); off < int64(len(b)); {
		start := off
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return wireError(md, from+off, protowire.ParseError(n))
		}
		off += int64(n)
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b[off:])
			if m < 0 {
				return wireError(md, from+start, protowire.ParseError(m))
			}
			off += int64(m)
			if isTensor {
				fields = append(fields, span{num, typ, from + start, from + off, from + off})
			}
			continue
		}
		lenAt := off
		v, m := protowire.ConsumeBytes(b[off:])
		if m < 0 {
			return wireError(md, from+start, protowire.ParseError(m))
		}
		off += int64(m)
		payload := off - int64(len(v))
		fr := frame{from + start, from + lenAt, from + payload, from + off}
		if isTensor {
			fields = append(fields, span{num, typ, fr.start, fr.payload, fr.end})
			continue
		}
		fd := md.Fields().ByNumber(num)
		if fd == nil || fd.Message() == nil || !holdsTensors[fd.Message().FullName()] {
			continue
		}
		i := counts[num]
		counts[num]++
		if !fd.IsList() && i > 0 {
			return fmt.Errorf("%w: %s field %s appears more than once (byte %d); re-save the model with onnx",
				ErrMalformed, md.Name(), fd.Name(), fr.start)
		}
		childPath := append(append([]frame(nil), path...), fr)
		childAddr := append(append([]step(nil), addr...), step{num, i})
		if err := w.message(fr.payload, fr.end, fd.Message(), childPath, childAddr, depth+1); err != nil {
			return err
		}
	}
	if isTensor {
		w.tensors = append(w.tensors, &tensorLoc{path: path, addr: addr, fields: fields})
	}
	return nil
}

func wireError(md protoreflect.MessageDescriptor, at int64, err error) error {
	return fmt.Errorf("%w: in %s at byte %d: %v", ErrMalformed, md.Name(), at, err)
}

// resolve finds the decoded message that addr names inside root.
func resolve(root protoreflect.Message, addr []step) (protoreflect.Message, error) {
	m := root
	for _, s := range addr {
		fd := m.Descriptor().Fields().ByNumber(s.num)
		if fd == nil {
			return nil, fmt.Errorf("no field %d in %s", s.num, m.Descriptor().Name())
		}
		if fd.IsList() {
			l := m.Get(fd).List()
			if s.index >= l.Len() {
				return nil, fmt.Errorf("%s.%s has %d elements, want index %d", m.Descriptor().Name(), fd.Name(), l.Len(), s.index)
			}
			m = l.Get(s.index).Message()
		} else {
			m = m.Get(fd).Message()
		}
	}
	return m, nil
}
