// Package onnxio reads ONNX models and writes them back with some tensors changed and every
// other byte as it was.
//
// # Reading
//
// [Load] reads a model file and indexes where each TensorProto lies in the encoding:
// initializers, Constant values and other attribute tensors, at any depth (subgraphs of If,
// Loop and Scan, model-local functions, sparse tensors). The model is then decoded without
// its raw_data payloads, so the decoded [Model.Proto] costs memory in proportion to the
// graph, not the weights; [Model.Values] reads a tensor's elements from raw_data, the typed
// field (float_data, int32_data, double_data) or external data.
//
// External data locations are resolved relative to the model's folder and checked before
// anything is read: absolute locations, ".." components, symbolic links that leave the
// folder, missing files and byte ranges past a file's end are refused with [ErrExternalData].
//
// # Writing
//
// [Model.SetValues] replaces a tensor's elements, rounded to its own type (FLOAT, FLOAT16,
// BFLOAT16 or DOUBLE), keeping its storage field. [Model.Save] then writes the original
// bytes with only those tensors' data records replaced; the length prefixes of the records
// around them change only when a length does. A model saved without changes is the input
// byte for byte, and fields of newer ONNX versions, unknown to the schema compiled here,
// pass through untouched. Same-length rewrites (raw_data, float_data, double_data, external
// data) change no length at all, so writing costs about one file copy.
//
// Files are written under a temporary name and renamed into place. The file the model was
// read from is never written unless it is the path given to Save.
package onnxio
