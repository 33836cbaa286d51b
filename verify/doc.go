// Package verify proves a rewritten model in ONNX Runtime: it runs the original and the
// rewritten model on the same seeded random inputs and compares their outputs.
//
// # ONNX Runtime
//
// Models run through github.com/yalue/onnxruntime_go, which loads the ONNX Runtime shared
// library (libonnxruntime.so.1, version 1.24 or newer) at run time. [FindLibrary] says where
// it is looked for: an explicit path (the command's --ort-lib), then $ONNXRUNTIME_LIB, then
// .ort/ in the current directory or above (where `make ort` puts it), then next to the
// executable. The binding needs cgo. When the library is missing or does not load, or the
// program was built without cgo, [Open] returns an error that wraps [ErrNoRuntime] and says
// how to get the library; nothing else in the module depends on ONNX Runtime.
//
// The library is loaded once per process, by the first [Open] that succeeds, and stays
// loaded: every [Runtime] of the process shares that one ONNX Runtime environment, and asking
// for a different library later is an error.
//
// # Running models
//
//	rt, err := verify.Open(verify.Options{Dims: map[string]int64{"N": 4}, Seed: 1})
//	...
//	inputs, err := rt.Inputs("model.onnx")     // from the original's input declarations
//	a, err := rt.Run("model.onnx", inputs)
//	b, err := rt.Run("rewritten.onnx", inputs) // the same inputs
//	for _, d := range verify.Compare(a, b) {
//		// d.SameShape, d.Finite, d.MaxAbs, d.MaxRel
//	}
//
// [Runtime.Run] opens models by path, so external data resolves relative to the model's
// folder, and returns every output widened to float64. Inputs may be float32, float16,
// bfloat16, float64, signed and unsigned integers of any width, or bool; string, complex and
// non-tensor inputs are refused with an error that names them. Outputs of those same types
// are read; float16 and bfloat16 outputs need a shape that the model declares or that the
// inputs fix, since the binding cannot size them itself.
//
// The execution provider is the CPU unless [Options].EP asks for CUDA or TensorRT. ONNX
// Runtime would silently fall back to the CPU when a GPU provider is not in the library;
// [Open] fails instead. A model that ONNX Runtime cannot load or run (an operator without a
// kernel for its type, such as Conv on float64 for the CPU) gets an error that names the file
// and carries ONNX Runtime's message.
//
// The package never prints: ONNX Runtime's own logging is set to fatal-only, and every
// failure comes back as an error.
package verify
