package onnxio

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/convcov/convcov-onnx/onnxio/onnxpb"
)

// DataFileName returns the name of the external data file that Save writes beside a model
// saved at path: the model's base name with ".data" added.
func DataFileName(path string) string { return filepath.Base(path) + ".data" }

// dataAlign is where each source data file starts in a written data file, so that tensors
// keep the alignment they had.
const dataAlign = 4096

// Save writes the model, with the tensors SetValues changed, to path. Every other byte of
// the model is written as it was read.
//
// When path is the file the model was loaded from, the save is in place: changed external
// tensors are patched into their data files where they lie, and the model file is replaced
// only if an inline tensor changed. Otherwise the model is written to path and, if it has
// external data, all of it goes to one new file named DataFileName(path) beside it, the
// tensors' locations and offsets updated to match; the input's files are not touched.
//
// Files are written to a temporary name in the target folder and renamed into place, so a
// failed save leaves no partial file (except that an in-place patch of external data
// writes into the data files directly).
func (m *Model) Save(path string) error { return m.save(path, nil) }

// save is Save, counting the bytes it writes in prog when prog is not nil.
func (m *Model) save(path string, prog *progress) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guardFault(&err, m.path)
	inPlace := m.path != "" && sameFile(m.path, path)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("onnxio: %s is a folder; give the output a file name", path)
	}
	if m.HasExternalData() && m.path == "" {
		return fmt.Errorf("onnxio: %s: the model has external data but was not loaded from a file", path)
	}
	for _, ref := range m.ext {
		if sameFile(path, ref.file) {
			return fmt.Errorf("onnxio: %s is the input's external data file %q; choose another output name", path, ref.location)
		}
	}
	edits := m.inlineEdits()

	// External data: patch in place, or write the output's own data file first.
	var data *tempFile
	if m.HasExternalData() {
		if inPlace {
			if err := m.patchExternal(prog); err != nil {
				return err
			}
			if len(edits) == 0 {
				prog.finish()
				return nil
			}
		} else {
			var extEdits []edit
			var err error
			data, extEdits, err = m.writeData(path, prog)
			if err != nil {
				return err
			}
			defer data.discard()
			edits = append(edits, extEdits...)
		}
	}

	// The model itself.
	s, err := newSplice(m.src, edits)
	if err != nil {
		return err
	}
	out, err := createTemp(path, m.path)
	if err != nil {
		return err
	}
	out.prog = prog
	defer out.discard()
	err = out.write(m.file, m.src, func(fs *fileSink) error { return s.write(fs, s.root) })
	if err != nil {
		return err
	}
	if data != nil {
		if err := data.commit(); err != nil {
			return err
		}
	}
	if err := out.commit(); err != nil {
		if data != nil {
			os.Remove(data.target)
		}
		return err
	}
	prog.finish()
	return nil
}

// WriteTo writes the encoded model, with the changed inline tensors, to w. It fails for a
// model with external data, whose tensors need a data file beside the model: use Save.
func (m *Model) WriteTo(w io.Writer) (int64, error) {
	if m.HasExternalData() {
		return 0, fmt.Errorf("onnxio: the model has external data; save it to a file with Save")
	}
	s, err := newSplice(m.src, m.inlineEdits())
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	err = s.writeTo(cw)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// patchExternal writes the changed external tensors into their data files in place.
func (m *Model) patchExternal(prog *progress) error {
	for _, t := range m.order {
		raw, ok := m.changes[t]
		ref := m.ext[t]
		if !ok || ref == nil {
			continue
		}
		f, err := os.OpenFile(ref.file, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("onnxio: tensor %q: %w", t.GetName(), err)
		}
		_, err = f.WriteAt(raw, ref.offset)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("onnxio: tensor %q: writing %s: %w", t.GetName(), ref.file, err)
		}
		prog.add(int64(len(raw)))
	}
	return nil
}

// writeData writes the data file of a model saved at path: each source data file in turn,
// at an aligned offset, with the changed tensors patched in. It returns the edits that point
// the model's external tensors at the new file.
func (m *Model) writeData(path string, prog *progress) (*tempFile, []edit, error) {
	name := DataFileName(path)
	target := filepath.Join(filepath.Dir(path), name)
	base := map[string]int64{}
	var files []string
	for _, t := range m.order {
		if ref := m.ext[t]; ref != nil {
			if _, ok := base[ref.file]; !ok {
				base[ref.file] = 0
				files = append(files, ref.file)
			}
			if sameFile(ref.file, target) {
				return nil, nil, fmt.Errorf("onnxio: %s: the output's data file %s would overwrite the input's data file %s; choose another output name",
					path, target, ref.location)
			}
		}
	}

	tmp, err := createTemp(target, files[0])
	if err != nil {
		return nil, nil, err
	}
	tmp.prog = prog
	err = tmp.write(nil, nil, func(w *fileSink) error {
		var at int64
		for _, file := range files {
			if pad := (dataAlign - at%dataAlign) % dataAlign; pad > 0 {
				if _, err := w.Write(make([]byte, pad)); err != nil {
					return err
				}
				at += pad
			}
			base[file] = at
			src, err := openData(file)
			if err != nil {
				return err
			}
			n, err := w.copyFile(src)
			src.Close()
			if err != nil {
				return fmt.Errorf("copying %s: %w", file, err)
			}
			at += n
		}
		return nil
	})
	if err == nil {
		for _, t := range m.order {
			if raw, ok := m.changes[t]; ok && m.ext[t] != nil {
				ref := m.ext[t]
				if _, err = tmp.f.WriteAt(raw, base[ref.file]+ref.offset); err != nil {
					err = fmt.Errorf("onnxio: writing %s: %w", target, err)
					break
				}
			}
		}
	}
	if err != nil { // tmp.write has named the file
		tmp.discard()
		return nil, nil, err
	}

	var edits []edit
	for _, t := range m.order {
		ref := m.ext[t]
		if ref == nil {
			continue
		}
		rec := externalRecords(t, name, base[ref.file]+ref.offset)
		edits = append(edits, replaceRecords(m.locs[t], fieldExternalData, rec)...)
	}
	return tmp, edits, nil
}

// externalRecords encodes t's external_data entries with a new location and offset, keeping
// the order and the other keys.
func externalRecords(t *onnxpb.TensorProto, location string, offset int64) []byte {
	var out []byte
	hasOffset := false
	add := func(key, value string) {
		var kv []byte
		kv = protowire.AppendTag(kv, 1, protowire.BytesType)
		kv = protowire.AppendString(kv, key)
		kv = protowire.AppendTag(kv, 2, protowire.BytesType)
		kv = protowire.AppendString(kv, value)
		out = protowire.AppendTag(out, fieldExternalData, protowire.BytesType)
		out = protowire.AppendBytes(out, kv)
	}
	for _, kv := range t.GetExternalData() {
		switch kv.GetKey() {
		case "location":
			add("location", location)
		case "offset":
			hasOffset = true
			add("offset", strconv.FormatInt(offset, 10))
		default:
			// TODO(onnxio): a "checksum" entry (SHA-1 of the data file) is kept as it was;
			// recompute it for the new file.
			add(kv.GetKey(), kv.GetValue())
		}
	}
	if !hasOffset && offset != 0 {
		add("offset", strconv.FormatInt(offset, 10))
	}
	return out
}

// tempFile is a file being written under a temporary name beside its target.
type tempFile struct {
	f      *os.File
	target string
	done   bool
	prog   *progress // counts the bytes written, when not nil
}

// createTemp opens a temporary file in target's folder, with the permissions of like (the
// input file) when it exists.
func createTemp(target, like string) (*tempFile, error) {
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("onnxio: cannot write %s: %w; check that its folder exists and can be written", target, err)
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(like); err == nil && like != "" {
		mode = fi.Mode().Perm()
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("onnxio: cannot write %s: %w", target, err)
	}
	return &tempFile{f: f, target: target}, nil
}

// write writes content into the file through a fileSink whose original bytes are mem,
// read from src (either may be nil).
func (t *tempFile) write(src *os.File, mem []byte, content func(*fileSink) error) error {
	fs := &fileSink{
		buf:  bufio.NewWriterSize(t.prog.writer(t.f), 1<<20),
		dst:  t.f,
		src:  src,
		mem:  mem,
		prog: t.prog,
	}
	if err := content(fs); err != nil {
		return fmt.Errorf("onnxio: writing %s: %w", t.target, err)
	}
	if err := fs.buf.Flush(); err != nil {
		return fmt.Errorf("onnxio: writing %s: %w", t.target, err)
	}
	return nil
}

// copyDirectly is the length from which a stretch of the original file is copied by the
// system, file to file (copy_file_range on Linux, as cp does), instead of through memory.
const copyDirectly = 1 << 20

// fileSink writes a file: new bytes through a buffer, long stretches of the original file
// directly from it.
type fileSink struct {
	buf  *bufio.Writer
	dst  *os.File
	src  *os.File // the original file; nil to copy from mem
	mem  []byte   // the original bytes
	prog *progress
}

func (f *fileSink) Write(p []byte) (int, error) { return f.buf.Write(p) }

func (f *fileSink) copyOriginal(from, to int64) error {
	if f.src == nil || to-from < copyDirectly {
		_, err := f.buf.Write(f.mem[from:to])
		return err
	}
	if _, err := f.src.Seek(from, io.SeekStart); err != nil {
		return err
	}
	n, err := f.copyFile(io.LimitReader(f.src, to-from))
	if err == nil && n != to-from {
		err = fmt.Errorf("the input ended %d bytes early; it changed while it was read", to-from-n)
	}
	return err
}

// copyFile appends everything r holds.
func (f *fileSink) copyFile(r io.Reader) (int64, error) {
	if err := f.buf.Flush(); err != nil {
		return 0, err
	}
	n, err := f.dst.ReadFrom(r)
	f.prog.add(n)
	return n, err
}

// commit closes the file and renames it to its target.
func (t *tempFile) commit() error {
	err := t.f.Close()
	if err == nil {
		err = os.Rename(t.f.Name(), t.target)
	}
	if err != nil {
		os.Remove(t.f.Name())
		return fmt.Errorf("onnxio: writing %s: %w", t.target, err)
	}
	t.done = true
	return nil
}

// discard removes the temporary file unless it was committed.
func (t *tempFile) discard() {
	if t.done {
		return
	}
	t.done = true
	t.f.Close()
	os.Remove(t.f.Name())
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(fa, fb)
}
