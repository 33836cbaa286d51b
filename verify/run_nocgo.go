//go:build !cgo

package verify

// Run always fails in a program built without cgo; the error wraps ErrNoRuntime.
func (r *Runtime) Run(path string, inputs []Tensor) ([]Tensor, error) {
	return nil, errNoCgo()
}

// run always fails in a program built without cgo; the error wraps ErrNoRuntime.
func (r *Runtime) run(sig *signature, inputs []Tensor) ([]Tensor, error) {
	return nil, errNoCgo()
}
