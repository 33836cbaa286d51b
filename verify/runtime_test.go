package verify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These tests change the environment and the working directory, so none is parallel.

func TestFindLibrary(t *testing.T) {
	// A fake source tree: root/.ort/libonnxruntime.so.1 and a package folder below it.
	root := t.TempDir()
	lib := filepath.Join(root, ".ort", LibraryName)
	pkg := filepath.Join(root, "a", "b")
	envLib := filepath.Join(root, "env", LibraryName)
	for _, p := range []string{lib, envLib} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not really a library"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()

	tests := []struct {
		name     string
		dir      string // working directory
		env      string // $ONNXRUNTIME_LIB
		explicit string
		want     string
		wantErr  []string // substrings of the error; the error must wrap ErrNoRuntime
	}{
		{name: "walks up to .ort", dir: pkg, want: lib},
		{name: ".ort in the working directory", dir: root, want: lib},
		{name: "env beats .ort", dir: pkg, env: envLib, want: envLib},
		{name: "explicit beats env", dir: pkg, env: envLib, explicit: lib, want: lib},
		{name: "explicit missing", dir: pkg, explicit: filepath.Join(empty, "nope.so"),
			wantErr: []string{"nope.so", "no such file", "make ort"}},
		{name: "explicit is a folder", dir: pkg, explicit: empty,
			wantErr: []string{"not a regular file"}},
		{name: "env missing, no fallback", dir: pkg, env: filepath.Join(empty, "gone.so"),
			wantErr: []string{"$ONNXRUNTIME_LIB", "gone.so"}},
		{name: "nothing anywhere", dir: empty,
			wantErr: []string{LibraryName + " not found", "make ort", LibraryEnv}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(tt.dir)
			t.Setenv(LibraryEnv, tt.env)
			got, err := FindLibrary(tt.explicit)
			if tt.wantErr != nil {
				if !errors.Is(err, ErrNoRuntime) {
					t.Fatalf("FindLibrary(%q) = %q, %v; want an error wrapping ErrNoRuntime",
						tt.explicit, got, err)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("FindLibrary(%q): %v", tt.explicit, err)
			}
			if got != tt.want {
				t.Errorf("FindLibrary(%q) = %q, want %q", tt.explicit, got, tt.want)
			}
		})
	}
}

func TestOptionsCheck(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "zero value", opts: Options{}},
		{name: "gpu providers", opts: Options{EP: EPTensorRT}},
		{name: "unknown provider", opts: Options{EP: "rocm"}, wantErr: `"rocm"`},
		{name: "provider names are lower case", opts: Options{EP: "CUDA"}, wantErr: `"CUDA"`},
		{name: "zero dimension", opts: Options{Dims: map[string]int64{"N": 0}}, wantErr: `"N"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.check()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("check() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("check() = %v, want an error mentioning %s", err, tt.wantErr)
			}
		})
	}
}
