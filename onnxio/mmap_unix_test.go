//go:build unix

package onnxio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTruncatedWhileMapped cuts the model file short after Load, as another program might:
// reading the lost tensors and saving must fail with an error, not crash the program on the
// fault that reading the mapping past its file's end raises.
func TestTruncatedWhileMapped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	copyTree(t, "../testdata/models", dir) // brings convmixer_digits_d64_l4_k9.onnx
	if err := os.Rename(filepath.Join(dir, "convmixer_digits_d64_l4_k9.onnx"), path); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	last := m.Tensors()[len(m.Tensors())-1]
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Values(last); err == nil || !strings.Contains(err.Error(), "changed while it was being read") {
		t.Errorf("Values after the file was cut short: %v, want an error saying it changed", err)
	}
	if err := m.Save(filepath.Join(dir, "out.onnx")); err == nil {
		t.Errorf("Save after the input was cut short succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "out.onnx")); err == nil {
		t.Errorf("a failed save left its output")
	}
}

// TestClose checks that Close releases the model and can be called twice.
func TestClose(t *testing.T) {
	m, err := Load("../testdata/cases/21_single_depthwise.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
