package verify

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LibraryName is the file name of the ONNX Runtime shared library that verify loads.
const LibraryName = "libonnxruntime.so.1"

// LibraryEnv is the environment variable that names the ONNX Runtime shared library when
// Options.Lib is empty.
const LibraryEnv = "ONNXRUNTIME_LIB"

// ErrNoRuntime is returned, wrapped with the reason, when ONNX Runtime cannot be used: the
// shared library is missing or does not load, or the program was built without cgo.
// Test for it with errors.Is.
var ErrNoRuntime = errors.New("onnx runtime not available")

// Execution providers that Options.EP accepts.
const (
	EPCPU      = "cpu"
	EPCUDA     = "cuda"
	EPTensorRT = "tensorrt"
)

// Options configure a Runtime. The zero value runs on the CPU with the library that
// FindLibrary finds, symbolic dimensions of 1 and seed 0.
type Options struct {
	// Lib is the path of the ONNX Runtime shared library. Empty means FindLibrary's search.
	Lib string

	// EP is the execution provider: "cpu" (the default when empty), "cuda" or "tensorrt".
	// Open fails when a requested GPU provider cannot be added, rather than letting
	// ONNX Runtime fall back to the CPU without a word.
	EP string

	// Dims gives values to the symbolic dimensions of model inputs, by name. Symbolic
	// dimensions not listed here, and dimensions without a name, are 1.
	Dims map[string]int64

	// Seed seeds the random inputs that Inputs makes.
	Seed uint64
}

// check reports the first invalid field of o.
func (o *Options) check() error {
	switch o.EP {
	case "", EPCPU, EPCUDA, EPTensorRT:
	default:
		return fmt.Errorf("verify: unknown execution provider %q; use %s, %s or %s",
			o.EP, EPCPU, EPCUDA, EPTensorRT)
	}
	for name, v := range o.Dims {
		if v < 1 {
			return fmt.Errorf("verify: dimension %q = %d: a dimension must be at least 1", name, v)
		}
	}
	return nil
}

// FindLibrary returns the path of the ONNX Runtime shared library. It takes, in order:
// explicit when it is not empty; the file named by $ONNXRUNTIME_LIB when that is set;
// .ort/libonnxruntime.so.1 in the current directory or the nearest parent that has one
// (where `make ort` puts it, so tests in any package of the source tree find it); and
// libonnxruntime.so.1 in the folder of the running executable.
//
// An explicit path or $ONNXRUNTIME_LIB that names no file is an error, not a reason to look
// further. When nothing is found, the error wraps ErrNoRuntime and says how to get the library.
func FindLibrary(explicit string) (string, error) {
	if explicit != "" {
		return checkLibrary(explicit, "onnx runtime library")
	}
	if env := os.Getenv(LibraryEnv); env != "" {
		return checkLibrary(env, "$"+LibraryEnv)
	}

	var tried []string
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, ".ort", LibraryName)
			if isFile(p) {
				return p, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
		tried = append(tried, fmt.Sprintf("no .ort/%s in %s or above", LibraryName, wd))
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), LibraryName)
		if isFile(p) {
			return p, nil
		}
		tried = append(tried, "none next to "+exe)
	}
	return "", fmt.Errorf("verify: %s not found (%s unset; %s); run make ort in the "+
		"source tree, or set %s to the library's path: %w",
		LibraryName, LibraryEnv, strings.Join(tried, "; "), LibraryEnv, ErrNoRuntime)
}

// checkLibrary returns path, made absolute, if it names a regular file.
func checkLibrary(path, what string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("verify: %s %s: %v: %w", what, path, err, ErrNoRuntime)
	}
	fi, err := os.Stat(abs)
	switch {
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the message
		}
		return "", fmt.Errorf("verify: %s %s: %v; run make ort in the source tree, "+
			"or point to an ONNX Runtime >= 1.24 %s: %w", what, path, err, LibraryName, ErrNoRuntime)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("verify: %s %s is not a regular file: %w", what, path, ErrNoRuntime)
	}
	return abs, nil
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// Runtime runs models in ONNX Runtime with one set of Options. Open makes one. Its methods
// may be called from several goroutines at once; each Run opens its own session.
//
// All Runtimes of a process share one ONNX Runtime environment, loaded by the first Open that
// succeeds and kept until the process ends (see Open).
type Runtime struct {
	opts Options
	lib  string
}

// Lib returns the path of the shared library the Runtime was opened with.
func (r *Runtime) Lib() string { return r.lib }

// EP returns the execution provider the Runtime runs on.
func (r *Runtime) EP() string {
	if r.opts.EP == "" {
		return EPCPU
	}
	return r.opts.EP
}

// Close releases the Runtime. The process's ONNX Runtime environment stays loaded for other
// and later Runtimes.
func (r *Runtime) Close() error { return nil }

// Inputs returns seeded random inputs for every input of the model file at path, in the
// order the model lists them, from Options.Dims and Options.Seed. Floating-point inputs are
// standard normal rounded to their type, integer inputs small non-negative values, bool
// inputs random. To compare two models, make the inputs once from the original and give the
// same inputs to both runs. A name in Options.Dims that no input uses is an error, and so is
// an input of a type verify cannot make (string, complex, non-tensor).
func (r *Runtime) Inputs(path string) ([]Tensor, error) {
	return makeInputs(path, r.opts.Dims, r.opts.Seed)
}
