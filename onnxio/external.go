package onnxio

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// extRef is a checked external data reference of one tensor.
type extRef struct {
	location string // as written in the model
	file     string // the resolved path
	offset   int64
	length   int64 // -1 when the model gives none
	size     int64 // of the file, when it was checked
}

// openData opens an external data file for reading; every read of external data goes
// through it, so that tests can count them.
var openData = os.Open

// checkExternal validates every external data reference before any is read.
func (m *Model) checkExternal() error {
	var dir string                // the model's folder, resolved once
	files := map[string]*extRef{} // resolved locations, so each file is checked once
	for _, t := range m.order {
		if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			continue
		}
		ref, err := parseExternal(t)
		if err != nil {
			return err
		}
		if m.path == "" {
			m.ext[t] = ref
			continue
		}
		if dir == "" {
			var err error
			if dir, err = resolvedDir(m.dir); err != nil {
				return err
			}
		}
		if done := files[ref.location]; done != nil {
			ref.file, ref.size = done.file, done.size
		} else if err := resolveExternal(dir, t, ref); err != nil {
			return err
		} else {
			files[ref.location] = ref
		}
		if err := checkRange(t, ref); err != nil {
			return err
		}
		m.ext[t] = ref
	}
	return nil
}

func parseExternal(t *onnxpb.TensorProto) (*extRef, error) {
	ref := &extRef{length: -1}
	seen := map[string]bool{}
	for _, kv := range t.GetExternalData() {
		key, value := kv.GetKey(), kv.GetValue()
		if seen[key] {
			return nil, fmt.Errorf("%w: tensor %q: external data key %q given twice; keep one", ErrExternalData, t.GetName(), key)
		}
		seen[key] = true
		switch key {
		case "location":
			ref.location = value
		case "offset", "length":
			v, err := strconv.ParseInt(value, 10, 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("%w: tensor %q: external data %s %q is not a non-negative integer", ErrExternalData, t.GetName(), key, value)
			}
			if key == "offset" {
				ref.offset = v
			} else {
				ref.length = v
			}
		}
	}
	if ref.location == "" {
		return nil, fmt.Errorf("%w: tensor %q: external data without a location", ErrExternalData, t.GetName())
	}
	loc := ref.location
	if filepath.IsAbs(loc) || strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, `\`) || filepath.VolumeName(loc) != "" {
		return nil, fmt.Errorf("%w: tensor %q: location %q is absolute; it must be relative to the model's folder", ErrExternalData, t.GetName(), loc)
	}
	for _, part := range strings.FieldsFunc(loc, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return nil, fmt.Errorf("%w: tensor %q: location %q has a \"..\" component; it must stay inside the model's folder", ErrExternalData, t.GetName(), loc)
		}
	}
	if strings.ContainsRune(loc, 0) {
		return nil, fmt.Errorf("%w: tensor %q: location %q holds a NUL byte", ErrExternalData, t.GetName(), loc)
	}
	return ref, nil
}

// resolveExternal finds ref's file inside the model's folder, following symbolic links only
// while they stay inside it, and checks the byte range against the file's size.
func resolveExternal(dir string, t *onnxpb.TensorProto, ref *extRef) error {
	file, err := filepath.EvalSymlinks(filepath.Join(dir, filepath.FromSlash(ref.location)))
	if err != nil {
		return fmt.Errorf("%w: tensor %q: location %q: %v; the data file must lie in the model's folder, where the model says",
			ErrExternalData, t.GetName(), ref.location, err)
	}
	file, err = filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("%w: tensor %q: location %q: %v", ErrExternalData, t.GetName(), ref.location, err)
	}
	if rel, err := filepath.Rel(dir, file); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%w: tensor %q: location %q leads out of the model's folder (to %s) through a symbolic link; copy the data file into the folder",
			ErrExternalData, t.GetName(), ref.location, file)
	}
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("%w: tensor %q: %v", ErrExternalData, t.GetName(), err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: tensor %q: location %q is not a regular file", ErrExternalData, t.GetName(), ref.location)
	}
	ref.file, ref.size = file, fi.Size()
	return nil
}

// checkRange checks ref's byte range against its file's size.
func checkRange(t *onnxpb.TensorProto, ref *extRef) error {
	end := ref.offset
	if ref.length >= 0 {
		end += ref.length
	}
	if ref.offset > ref.size || end > ref.size || end < ref.offset {
		return fmt.Errorf("%w: tensor %q: offset %d and length %d run past the end of %s (%d bytes); the data file is cut short or belongs to another model",
			ErrExternalData, t.GetName(), ref.offset, ref.length, ref.location, ref.size)
	}
	return nil
}

// resolvedDir is the model's folder with symbolic links resolved, as an absolute path.
func resolvedDir(dir string) (string, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err == nil {
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		return "", fmt.Errorf("%w: model folder: %v", ErrExternalData, err)
	}
	return dir, nil
}

// readExternal reads want bytes of t's external data.
func (m *Model) readExternal(t *onnxpb.TensorProto, ref *extRef, want int64) ([]byte, error) {
	if ref.file == "" {
		return nil, fmt.Errorf("%w: tensor %q: the model was not loaded from a file, so its external data %q cannot be found",
			ErrExternalData, t.GetName(), ref.location)
	}
	if ref.length >= 0 && ref.length != want {
		return nil, fmt.Errorf("%w: tensor %q: external data length is %d bytes, but dims %v of %s need %d",
			ErrTensorData, t.GetName(), ref.length, t.GetDims(), TypeName(t.GetDataType()), want)
	}
	if ref.offset+want > ref.size || ref.offset+want < ref.offset {
		return nil, fmt.Errorf("%w: tensor %q: %d bytes at offset %d run past the end of %s (%d bytes)",
			ErrExternalData, t.GetName(), want, ref.offset, ref.location, ref.size)
	}
	f, err := openData(ref.file)
	if err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrExternalData, t.GetName(), err)
	}
	defer f.Close()
	buf := make([]byte, want)
	if n, err := f.ReadAt(buf, ref.offset); n < len(buf) {
		return nil, fmt.Errorf("%w: tensor %q: reading %s: %v", ErrExternalData, t.GetName(), ref.location, err)
	}
	return buf, nil
}
