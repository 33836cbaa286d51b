package onnxio

import (
	"os"
	"path/filepath"
	"testing"
)

// copyFixture copies the files of a fixture folder (or one model file) into dir.
func copyFixture(t *testing.T, src, dir string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == "." {
			rel = filepath.Base(path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// changeFirstFloat sets the elements of the first FLOAT tensor with data to their negation,
// so that a save has something to write.
func changeFirstFloat(t *testing.T, m *Model) {
	t.Helper()
	for _, tp := range m.Tensors() {
		if tp.GetDataType() != 1 || len(tp.GetDims()) == 0 {
			continue
		}
		v, err := m.Values(tp)
		if err != nil || len(v) == 0 {
			continue
		}
		for i := range v {
			v[i] = -v[i] - 1
		}
		if err := m.SetValues(tp, v); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("no FLOAT tensor to change")
}

// TestSaveProgress checks the counts SaveWith reports: they start at zero, never go down,
// and end at the bytes written, for a model with inline weights, one whose data goes to a
// new data file, and one patched in place.
func TestSaveProgress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, fixture, model string
		inPlace              bool
		written              []string // the files whose sizes add up to the bytes written
	}{
		{"inline", "../testdata/models/convmixer_digits_d64_l4_k9.onnx", "convmixer_digits_d64_l4_k9.onnx", false,
			[]string{"out.onnx"}},
		{"external to a new file", "../testdata/models/fixtures/14a_external_one_file", "model.onnx", false,
			[]string{"out.onnx", "out.onnx.data"}},
		{"external in place", "../testdata/models/fixtures/14a_external_one_file", "model.onnx", true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			copyFixture(t, tc.fixture, dir)
			m, err := Load(filepath.Join(dir, tc.model))
			if err != nil {
				t.Fatal(err)
			}
			changeFirstFloat(t, m)
			out := filepath.Join(dir, "out.onnx")
			if tc.inPlace {
				out = filepath.Join(dir, tc.model)
			}

			type call struct{ written, total int64 }
			var calls []call
			record := func(w, total int64) { calls = append(calls, call{w, total}) }
			err = m.SaveWith(out, SaveOptions{Progress: record})
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) < 2 {
				t.Fatalf("got %d progress calls, want at least the first and the last", len(calls))
			}
			if calls[0].written != 0 || calls[0].total <= 0 {
				t.Errorf("first call (%d, %d), want (0, total > 0)", calls[0].written, calls[0].total)
			}
			for i := 1; i < len(calls); i++ {
				if calls[i].written < calls[i-1].written || calls[i].written > calls[i].total {
					t.Errorf("call %d: (%d, %d) after (%d, %d), want written growing and within total",
						i, calls[i].written, calls[i].total, calls[i-1].written, calls[i-1].total)
				}
			}
			last := calls[len(calls)-1]
			if last.written != last.total {
				t.Errorf("last call (%d, %d), want written == total", last.written, last.total)
			}
			var want int64
			for _, f := range tc.written {
				fi, err := os.Stat(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				want += fi.Size()
			}
			if tc.inPlace {
				want = 0
				for tp, raw := range m.changes {
					if m.ext[tp] != nil {
						want += int64(len(raw))
					}
				}
			}
			if last.written != want {
				t.Errorf("reported %d bytes written, want %d", last.written, want)
			}
			// The estimate made before writing is close to what was written.
			if d := calls[0].total - want; d < -64 || d > 64 {
				t.Errorf("first total %d, want within 64 bytes of the %d written", calls[0].total, want)
			}
		})
	}
}
