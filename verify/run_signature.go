package verify

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/convcov/convcov-onnx/onnxio"
	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// signature is what a model feeds on and returns: the main graph's inputs that no
// initializer backs (the ones ONNX Runtime asks for), and its outputs.
type signature struct {
	path    string // the model's file, for messages
	inputs  []*onnxpb.ValueInfoProto
	outputs []*onnxpb.ValueInfoProto
}

// readSignature reads the graph inputs and outputs of the model file at path. onnxio.Load
// decodes the model without its raw_data, so this costs about one copy of the file, briefly.
func readSignature(path string) (*signature, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("verify: model %s: not a regular file", path)
	}
	m, err := onnxio.Load(path)
	if err != nil {
		return nil, loadError(path, err)
	}
	return newSignature(path, m.Proto)
}

// newSignature returns the signature of mp, the model in the file at path. It copies what it
// keeps, so that the rest of mp can be let go.
func newSignature(path string, mp *onnxpb.ModelProto) (*signature, error) {
	g := mp.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("verify: model %s has no graph", path)
	}
	initialized := map[string]bool{}
	for _, t := range g.GetInitializer() {
		initialized[t.GetName()] = true
	}
	for _, st := range g.GetSparseInitializer() {
		initialized[st.GetValues().GetName()] = true
	}
	s := &signature{path: path}
	for _, vi := range g.GetInput() {
		if !initialized[vi.GetName()] {
			s.inputs = append(s.inputs, proto.CloneOf(vi))
		}
	}
	for _, vi := range g.GetOutput() {
		s.outputs = append(s.outputs, proto.CloneOf(vi))
	}
	return s, nil
}

// loadError puts onnxio.Load's error for path into verify's form, naming the file once.
func loadError(path string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe) && pe.Path == path:
		return fmt.Errorf("verify: model %s: %w", path, pe.Err) // reading the file failed
	case strings.Contains(err.Error(), path):
		return fmt.Errorf("verify: %w", err)
	}
	return fmt.Errorf("verify: model %s: %w", path, err)
}
