//go:build cgo

package verify

import (
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// env is the process's one ONNX Runtime environment. The binding keeps the environment in
// package state and InitializeEnvironment fails when called twice, so every Runtime shares
// this one. It is created by the first Open that succeeds and lives until the process ends:
// unloading and reloading the library in one process is not something ONNX Runtime promises
// to survive. A failed attempt leaves nothing behind, so a later Open may try again, for
// instance after `make ort`.
var env struct {
	mu  sync.Mutex
	lib string // the library the environment was made from; "" until then
}

// Open returns a Runtime for opts. It checks opts, finds the library (see FindLibrary), loads
// it unless the process already has, and checks that a requested GPU execution provider can
// be added. Errors about the library wrap ErrNoRuntime.
//
// The first Open that succeeds loads the library for the whole process: the Go binding keeps
// one global ONNX Runtime environment, which stays until the process ends. Later Opens
// reuse it, and one that names a different library file fails. A failed load leaves nothing
// behind, so Open may be tried again.
func Open(opts Options) (*Runtime, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	lib, err := FindLibrary(opts.Lib)
	if err != nil {
		return nil, err
	}
	if err := initEnvironment(lib); err != nil {
		return nil, err
	}
	opts.Dims = maps.Clone(opts.Dims) // the caller may change its map later
	r := &Runtime{opts: opts, lib: lib}

	// Adding the provider to throwaway session options is the check: ONNX Runtime answers
	// there whether the provider exists, not when a session quietly runs on the CPU.
	so, err := r.sessionOptions()
	if err != nil {
		return nil, err
	}
	so.Destroy()
	return r, nil
}

// initEnvironment makes the process's ONNX Runtime environment from lib, or checks that the
// existing one came from the same file.
func initEnvironment(lib string) error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.lib != "" {
		if sameFile(env.lib, lib) {
			return nil
		}
		return fmt.Errorf("verify: onnx runtime is already loaded from %s in this process; "+
			"cannot also load %s", env.lib, lib)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
		err = ortCause(err)
		hint := "it must be ONNX Runtime 1.24 or newer built for this machine; run make ort"
		if strings.Contains(err.Error(), "API base") {
			hint = "it is older than ONNX Runtime 1.24, which the Go binding needs; run make ort"
		}
		return fmt.Errorf("verify: cannot load onnx runtime library %s (%v); %s: %w",
			lib, err, hint, ErrNoRuntime)
	}
	env.lib = lib
	return nil
}

func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// sessionOptions returns new session options for r's execution provider. The caller
// destroys them.
func (r *Runtime) sessionOptions() (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("verify: onnx runtime session options: %w", err)
	}
	// Keep ONNX Runtime's own logger quiet: a library must not write to stderr, and every
	// failure comes back as an error anyway.
	if err := so.SetLogSeverityLevel(ort.LoggingLevelFatal); err != nil {
		so.Destroy()
		return nil, fmt.Errorf("verify: onnx runtime session options: %w", err)
	}
	switch r.opts.EP {
	case EPCUDA:
		err = appendCUDA(so)
	case EPTensorRT:
		// TensorRT takes what it supports; CUDA is added after it for the rest, as ONNX
		// Runtime recommends, before the CPU.
		if err = appendTensorRT(so); err == nil {
			err = appendCUDA(so)
		}
	}
	if err != nil {
		so.Destroy()
		return nil, fmt.Errorf("verify: execution provider %s cannot be used with %s (%v); "+
			"it needs an ONNX Runtime build with that provider and its libraries, "+
			"or use the cpu provider", r.opts.EP, r.lib, err)
	}
	return so, nil
}

func appendCUDA(so *ort.SessionOptions) error {
	o, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer o.Destroy()
	return so.AppendExecutionProviderCUDA(o)
}

func appendTensorRT(so *ort.SessionOptions) error {
	o, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return err
	}
	defer o.Destroy()
	return so.AppendExecutionProviderTensorRT(o)
}

// Version returns the version of the loaded ONNX Runtime, such as "1.30.0".
func (r *Runtime) Version() string { return ort.GetVersion() }
