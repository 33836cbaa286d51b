package inject

import (
	"fmt"
	"strings"
)

// Schedule is the depth schedule of ALGORITHM.md 3: layer depth d in [0, 1] gets
// σ(d) = Sigma0 + V·d + ½·A·d².
type Schedule struct {
	Sigma0 float64 // σ at the first depthwise layer (d = 0)
	V      float64 // slope of σ at d = 0
	A      float64 // curvature: σ grows by ½·A·d² on top of the linear part
}

// Sigma returns σ(d) = Sigma0 + V·d + ½·A·d².
func (s Schedule) Sigma(d float64) float64 {
	return s.Sigma0 + s.V*d + 0.5*s.A*(d*d)
}

// DefaultPreset is the preset the command line uses when none is named: the paper's
// ImageNet setting for filters that train after initialization.
const DefaultPreset = "imagenet-thawed"

// presets are the paper's schedules, in the table order of ALGORITHM.md 3.
var presets = []struct {
	name string
	s    Schedule
}{
	{"fig6", Schedule{Sigma0: 0.5, V: 0.5, A: 3}},             // illustration next to Eq. 7
	{"cifar-patch2", Schedule{Sigma0: 0.08, V: 0.37, A: 2.9}}, // App. C, 2×2 patches
	{"cifar-patch1", Schedule{Sigma0: 0.16, V: 0.74, A: 5.8}}, // App. C "approximately doubled"
	{"imagenet-frozen", Schedule{Sigma0: 0.15, V: 0.5, A: 0.25}},
	{"imagenet-thawed", Schedule{Sigma0: 0.15, V: 0.25, A: 1.0}},
}

// Preset returns the named schedule; [PresetNames] lists the names.
func Preset(name string) (Schedule, error) {
	for _, p := range presets {
		if p.name == name {
			return p.s, nil
		}
	}
	return Schedule{}, fmt.Errorf("inject: unknown schedule preset %q: want one of %s",
		name, strings.Join(PresetNames(), ", "))
}

// PresetNames returns the names [Preset] accepts, in the table order of ALGORITHM.md 3.
func PresetNames() []string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.name
	}
	return names
}

// Depth returns the relative depth d = (i−1)/(D−1) of the 1-based layer i among D
// depthwise layers, and 0 when D <= 1 (the paper leaves D = 1 undefined). It does
// not check that 1 <= i <= D; outside that range it extrapolates.
func Depth(i, D int) float64 {
	if D <= 1 {
		return 0
	}
	return float64(i-1) / float64(D-1)
}
