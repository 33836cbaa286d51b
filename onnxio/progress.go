package onnxio

import (
	"io"
	"os"
)

// SaveOptions are the options of [Model.SaveWith]. The zero value saves as [Model.Save] does.
type SaveOptions struct {
	// Progress, when not nil, is called on the saving goroutine as the model and its data
	// file are written: written is the number of bytes written so far, total the number the
	// save expects to write in all, known before the first byte. The total can differ from
	// the final count by the few bytes of the length prefixes and data locations a save
	// rewrites; after a successful save the last call has written == total. Calls come
	// about once per MiB, so a program can draw a progress bar from them; the library never
	// prints.
	Progress func(written, total int64)
}

// SaveWith is [Model.Save] with options.
func (m *Model) SaveWith(path string, opts SaveOptions) error {
	var p *progress
	if opts.Progress != nil {
		p = &progress{report: opts.Progress, total: m.saveSize(path)}
		p.report(0, p.total)
	}
	return m.save(path, p)
}

// progress counts the bytes a save writes and reports them.
type progress struct {
	report         func(written, total int64)
	written, total int64
}

// add counts n more bytes written. A nil progress counts nothing.
func (p *progress) add(n int64) {
	if p == nil || n == 0 {
		return
	}
	p.written += n
	if p.written > p.total {
		p.total = p.written
	}
	p.report(p.written, p.total)
}

// finish reports the final count after a successful save.
func (p *progress) finish() {
	if p != nil {
		p.report(p.written, p.written)
	}
}

// writer counts the bytes written through w, which should be the file under a buffer so
// that the count moves once per buffer flush rather than once per record.
func (p *progress) writer(w io.Writer) io.Writer {
	if p == nil {
		return w
	}
	return &progressWriter{w: w, p: p}
}

type progressWriter struct {
	w io.Writer
	p *progress
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.p.add(int64(n))
	return n, err
}

// saveSize estimates the bytes a save to path writes: the changed external tensors when it
// patches them in place, else the model and, with external data, the new data file with
// its alignment padding.
func (m *Model) saveSize(path string) int64 {
	inPlace := m.path != "" && sameFile(m.path, path)
	var n int64
	if !inPlace || len(m.inlineEdits()) > 0 {
		n += int64(len(m.src))
	}
	seen := map[string]bool{}
	var at int64
	for _, t := range m.order {
		ref := m.ext[t]
		if ref == nil {
			continue
		}
		if inPlace {
			if raw, ok := m.changes[t]; ok {
				n += int64(len(raw))
			}
			continue
		}
		if seen[ref.file] {
			continue
		}
		seen[ref.file] = true
		at += (dataAlign - at%dataAlign) % dataAlign
		if fi, err := os.Stat(ref.file); err == nil {
			at += fi.Size()
		}
	}
	return n + at
}
