//go:build !cgo

package verify

import "fmt"

// Open always fails in a program built without cgo: the ONNX Runtime binding needs cgo to
// load the shared library. The error wraps ErrNoRuntime.
func Open(opts Options) (*Runtime, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	return nil, errNoCgo()
}

// Version returns "" in a program built without cgo.
func (r *Runtime) Version() string { return "" }

func errNoCgo() error {
	return fmt.Errorf("verify: this binary was built without cgo (CGO_ENABLED=0), so it cannot "+
		"load ONNX Runtime; rebuild it with CGO_ENABLED=1 and a C compiler: %w", ErrNoRuntime)
}
