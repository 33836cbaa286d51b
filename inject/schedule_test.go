package inject

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// goldenPreset maps the preset names of the goldens to the command-line names.
var goldenPreset = map[string]string{
	"fig6_illustration":      "fig6",
	"cifar10_patch2":         "cifar-patch2",
	"cifar10_patch1_doubled": "cifar-patch1",
	"imagenet_frozen":        "imagenet-frozen",
	"imagenet_thawed":        "imagenet-thawed",
}

func TestScheduleGoldens(t *testing.T) {
	t.Parallel()
	var golden struct {
		Meta struct {
			Presets map[string]struct{ S0, V, A float64 }
		} `json:"_meta"`
		Cases []struct {
			Preset string
			D      int
			Layers []struct {
				I     int
				D     float64
				Sigma float64
			}
		}
	}
	readGolden(t, "schedule.json", &golden)
	if len(golden.Meta.Presets) != len(goldenPreset) || len(golden.Cases) != 35 {
		t.Fatalf("schedule.json: got %d presets and %d cases, want %d and 35",
			len(golden.Meta.Presets), len(golden.Cases), len(goldenPreset))
	}
	for name, want := range golden.Meta.Presets {
		s, err := Preset(goldenPreset[name])
		if err != nil {
			t.Fatalf("preset %s: %v", name, err)
		}
		if s != (Schedule{Sigma0: want.S0, V: want.V, A: want.A}) {
			t.Errorf("preset %s: got %+v, want %+v", name, s, want)
		}
	}
	for _, c := range golden.Cases {
		t.Run(fmt.Sprintf("%s/D=%d", c.Preset, c.D), func(t *testing.T) {
			s, err := Preset(goldenPreset[c.Preset])
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Layers) != c.D {
				t.Fatalf("got %d layers, want D = %d", len(c.Layers), c.D)
			}
			for _, l := range c.Layers {
				d := Depth(l.I, c.D)
				checkClose(t, fmt.Sprintf("layer %d: d", l.I), d, l.D, goldenTol)
				checkClose(t, fmt.Sprintf("layer %d: sigma", l.I), s.Sigma(d), l.Sigma, goldenTol)
			}
		})
	}
}

// TestStackExample checks whole models' worth of layers of stack_example.json:
// schedule, raw eigenvalues and traces, and entries of R₊, at the golden tolerance.
func TestStackExample(t *testing.T) {
	t.Parallel()
	var golden struct {
		Cases []struct {
			D, K   int
			Preset string
			Layers []struct {
				I                int
				D                float64
				Sigma            float64
				EigMinRaw        float64 `json:"eig_min_raw"`
				EigMaxRaw        float64 `json:"eig_max_raw"`
				TraceRaw         float64 `json:"trace_raw"`
				TraceClip        float64 `json:"trace_psd_clip"`
				Centre           float64 `json:"center_variance_psd_clip"`
				Corner           float64 `json:"corner_variance_psd_clip"`
				CentreRightCovar float64 `json:"cov_center_with_right_neighbour_psd_clip"`
			}
		}
	}
	readGolden(t, "stack_example.json", &golden)
	cache := NewCache()
	for _, c := range golden.Cases {
		t.Run(fmt.Sprintf("%s/D=%d/k=%d", c.Preset, c.D, c.K), func(t *testing.T) {
			t.Parallel()
			s, err := Preset(goldenPreset[c.Preset])
			if err != nil {
				t.Fatal(err)
			}
			kernel := []int{c.K, c.K}
			keys := make([]Key, c.D)
			for i := range keys {
				keys[i] = Key{Kernel: kernel, Sigma: s.Sigma(Depth(i+1, c.D))}
			}
			if err := cache.Warm(keys, 0); err != nil {
				t.Fatal(err)
			}
			n, centre := c.K*c.K, (c.K*c.K-1)/2
			for _, l := range c.Layers {
				what := fmt.Sprintf("layer %d: ", l.I)
				sigma := s.Sigma(Depth(l.I, c.D))
				checkClose(t, what+"sigma", sigma, l.Sigma, goldenTol)
				r, err := ClosedForm(kernel, sigma)
				if err != nil {
					t.Fatal(err)
				}
				p, err := cache.ClosedForm(kernel, sigma)
				if err != nil {
					t.Fatal(err)
				}
				checkClose(t, what+"λ_min", p.Eigenvalues[0], l.EigMinRaw, goldenTol)
				checkClose(t, what+"λ_max", p.Eigenvalues[n-1], l.EigMaxRaw, goldenTol)
				checkClose(t, what+"trace R", trace(r), l.TraceRaw, goldenTol)
				checkClose(t, what+"trace R₊", trace(p.Cov), l.TraceClip, goldenTol)
				checkClose(t, what+"centre variance", p.Cov.At(centre, centre), l.Centre, goldenTol)
				checkClose(t, what+"corner variance", p.Cov.At(0, 0), l.Corner, goldenTol)
				checkClose(t, what+"centre, right neighbour", p.Cov.At(centre, centre+1),
					l.CentreRightCovar, goldenTol)
			}
		})
	}
}

func TestPresets(t *testing.T) {
	t.Parallel()
	want := []string{"fig6", "cifar-patch2", "cifar-patch1", "imagenet-frozen", "imagenet-thawed"}
	if got := PresetNames(); !slices.Equal(got, want) {
		t.Errorf("PresetNames: got %q, want %q", got, want)
	}
	if _, err := Preset(DefaultPreset); err != nil {
		t.Errorf("DefaultPreset %q: %v", DefaultPreset, err)
	}
	_, err := Preset("imagenet")
	if err == nil {
		t.Fatal(`Preset("imagenet"): got no error`)
	}
	// The message must list the valid names; this checks it does, not its wording.
	for _, name := range want {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("got %q, want it to list %q", err, name)
		}
	}
}

func TestDepth(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		i, D int
		want float64
	}{
		{1, 1, 0},
		{1, 0, 0},
		{1, 2, 0},
		{2, 2, 1},
		{1, 12, 0},
		{12, 12, 1},
		{4, 7, 0.5},
	} {
		if got := Depth(c.i, c.D); got != c.want {
			t.Errorf("Depth(%d, %d): got %v, want %v", c.i, c.D, got, c.want)
		}
	}
	s := Schedule{Sigma0: 0.5, V: 0.5, A: 3}
	if got := s.Sigma(1); got != 2.5 {
		t.Errorf("fig6 σ(1): got %v, want 2.5", got)
	}
	if got := s.Sigma(0); got != 0.5 || math.IsNaN(got) {
		t.Errorf("fig6 σ(0): got %v, want 0.5", got)
	}
}
