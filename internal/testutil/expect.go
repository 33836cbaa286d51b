package testutil

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Outcomes of a model, as the fixtures' expect.json names them.
const (
	OutcomeRewrite   = "rewrite"   // output written, REWRITE tensors differ, nothing else
	OutcomeUnchanged = "unchanged" // output written and equal to the input
	OutcomeRefuse    = "refuse"    // non-zero exit, no output file
)

// Actions of a node, as both expectation files name them.
const (
	Rewrite = "REWRITE"
	Skip    = "SKIP"
	Keep    = "KEEP"
	Refuse  = "REFUSE"
)

// MainScope is the scope of a node of the main graph.
const MainScope = "main"

// Model is what one expectation file says of one model.
type Model struct {
	Set     string // "cases" or "fixtures"
	File    string // the model's path relative to the set's folder
	Path    string // the model's path
	Outcome string // OutcomeRewrite, OutcomeUnchanged or OutcomeRefuse
	Exit    int    // the expected exit status of init
	D       int    // depthwise convolutions of the main graph; -1 for a refused model
	SHA256  string // of the model file

	RefuseKeywords  []string // for a refused model: keywords of the error
	MessageKeywords []string // keywords of what the tool prints (unchanged models)
	DataFiles       []DataFile
	Nodes           []Node
	Tensors         []TensorStats // decoded original values of some weight tensors
}

// TensorStats describes the original elements of a tensor, as the generator decoded them.
type TensorStats struct {
	Name   string
	Sum    float64 // exactly rounded sum of the elements
	SumSq  float64 // exactly rounded sum of their squares
	First3 []float64
}

// Name is a short name for subtests: the set and the file without ".onnx", "/" made "_".
func (m *Model) Name() string {
	return m.Set + ":" + strings.ReplaceAll(strings.TrimSuffix(m.File, ".onnx"), "/", "_")
}

// DataFile is an external data file that the model reads.
type DataFile struct {
	Path   string
	SHA256 string
}

// Node is what an expectation file says of one node.
type Node struct {
	Name   string // "" for an unnamed node
	Index  int    // 0-based position in its scope's node list; -1 when not given
	Scope  string // MainScope, "<outer node>/<attribute>" or "function:<domain>.<name>"
	OpType string // "" when not given
	Action string // Rewrite, Skip, Keep or Refuse

	// For Rewrite: the tensor that gets new values, an initializer or (Constant true) the
	// Constant node whose value attribute holds it.
	Tensor   string
	Constant bool

	// Depth, for nodes counted in D (HasDepth); Stage is -1 when not given.
	HasDepth bool
	I        int
	Depth    float64
	Stage    int

	// Shape; zero or nil when not given.
	Channels   int64
	Multiplier int64
	Kernel     []int64

	Keywords  []string // for Skip and Refuse: keywords of the message
	Warn      []string // for Rewrite: keywords of a warning that must accompany it
	NoWarning bool     // for Rewrite: no warning may mention the node
}

// ID names the node in messages: its name, or its position when it has none.
func (n *Node) ID() string {
	id := n.Name
	if id == "" {
		id = fmt.Sprintf("#%d", n.Index)
	}
	if n.Scope != MainScope {
		id += " in " + n.Scope
	}
	return id
}

// Expectations reads testdata/cases/expect.json and testdata/models/fixtures/expect.json.
func Expectations(t testing.TB) []Model {
	t.Helper()
	root := RepoRoot(t)
	cases, err := readCases(filepath.Join(root, "testdata", "cases"))
	if err != nil {
		t.Fatal(err)
	}
	fixtures, err := readFixtures(filepath.Join(root, "testdata", "models", "fixtures"))
	if err != nil {
		t.Fatal(err)
	}
	return append(cases, fixtures...)
}

// The cases file: testdata/cases/expect.json.
type casesFile struct {
	Cases []struct {
		File   string `json:"file"`
		Exit   string `json:"exit"`
		SHA256 string `json:"sha256"`
		Nodes  map[string]struct {
			Action   string   `json:"action"`
			Weight   string   `json:"weight"`
			Keywords []string `json:"keywords"`
		} `json:"nodes"`
		Depth map[string]struct {
			I     int     `json:"i"`
			Count int     `json:"D"`
			Rel   float64 `json:"d"`
		} `json:"depth"`
		Files       map[string]string `json:"files"` // "<path> sha256 (...)": sha256
		WeightStats map[string]struct {
			Sum    float64   `json:"sum"`
			SumSq  float64   `json:"sum_sq"`
			First3 []float64 `json:"first3"`
		} `json:"weight_stats"`
	} `json:"cases"`
}

// constantWeight reads the cases file's description of a Constant node's value.
var constantWeight = regexp.MustCompile(`Constant node '([^']+)'`)

func readCases(dir string) ([]Model, error) {
	b, err := os.ReadFile(filepath.Join(dir, "expect.json"))
	if err != nil {
		return nil, err
	}
	var f casesFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("testdata/cases/expect.json: %w", err)
	}
	var models []Model
	for _, c := range f.Cases {
		exit, err := strconv.Atoi(c.Exit)
		if err != nil {
			return nil, fmt.Errorf("testdata/cases/expect.json: %s: exit %q: %w", c.File, c.Exit, err)
		}
		m := Model{
			Set:    "cases",
			File:   c.File,
			Path:   filepath.Join(dir, filepath.FromSlash(c.File)),
			Exit:   exit,
			SHA256: c.SHA256,
		}
		for _, d := range c.Depth {
			m.D = d.Count
		}
		switch {
		case exit != 0:
			m.Outcome, m.D = OutcomeRefuse, -1
		case m.D == 0:
			m.Outcome = OutcomeUnchanged
			m.MessageKeywords = []string{"no depthwise|0 depthwise"} // EXPECT.md, case 21b
		default:
			m.Outcome = OutcomeRewrite
		}
		for key, sum := range c.Files {
			// The key is the file's path relative to the model's folder, then a remark.
			rel := strings.Fields(key)[0]
			m.DataFiles = append(m.DataFiles, DataFile{
				Path:   filepath.Join(filepath.Dir(m.Path), filepath.FromSlash(rel)),
				SHA256: sum,
			})
		}
		for name, n := range c.Nodes {
			node := Node{
				Name:     name,
				Index:    -1,
				Scope:    MainScope,
				Action:   n.Action,
				Stage:    -1,
				Keywords: n.Keywords,
			}
			if n.Action == Rewrite {
				node.Tensor = n.Weight
				if sub := constantWeight.FindStringSubmatch(n.Weight); sub != nil {
					node.Tensor, node.Constant = sub[1], true
				}
			}
			if d, ok := c.Depth[name]; ok {
				node.HasDepth, node.I, node.Depth = true, d.I, d.Rel
			}
			m.Nodes = append(m.Nodes, node)
		}
		for name, w := range c.WeightStats {
			m.Tensors = append(m.Tensors, TensorStats{Name: name, Sum: w.Sum, SumSq: w.SumSq, First3: w.First3})
		}
		slices.SortFunc(m.Tensors, func(a, b TensorStats) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(m.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
		models = append(models, m)
	}
	return models, nil
}

// The fixtures file: testdata/models/fixtures/expect.json (schema 1).
type fixturesFile struct {
	Schema int `json:"schema"`
	Models []struct {
		File            string   `json:"file"`
		SHA256          string   `json:"sha256"`
		Outcome         string   `json:"outcome"`
		Exit            int      `json:"exit"`
		D               *int     `json:"D"`
		RefuseKeywords  []string `json:"refuse_keywords"`
		MessageKeywords []string `json:"message_keywords"`
		DataFiles       []struct {
			File   string `json:"file"`
			SHA256 string `json:"sha256"`
		} `json:"data_files"`
		Nodes []struct {
			Node       string   `json:"node"`
			NodeIndex  int      `json:"node_index"`
			Scope      string   `json:"scope"`
			OpType     string   `json:"op_type"`
			Action     string   `json:"action"`
			Tensor     *string  `json:"tensor"`
			TensorKind *string  `json:"tensor_kind"`
			I          *int     `json:"i"`
			D          *float64 `json:"d"`
			Stage      *int     `json:"stage"`
			Channels   *int64   `json:"channels"`
			Multiplier *int64   `json:"multiplier"`
			Kernel     []int64  `json:"kernel"`
			Keywords   []string `json:"keywords"`
			Warn       []string `json:"warn"`
			NoWarning  bool     `json:"no_warning"`
		} `json:"nodes"`
		Tensors []struct {
			Name   string    `json:"name"`
			Sum    float64   `json:"sum"`
			SumSq  float64   `json:"sum_sq"`
			First3 []float64 `json:"first3"`
		} `json:"tensors"`
	} `json:"models"`
}

func readFixtures(dir string) ([]Model, error) {
	b, err := os.ReadFile(filepath.Join(dir, "expect.json"))
	if err != nil {
		return nil, err
	}
	var f fixturesFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("testdata/models/fixtures/expect.json: %w", err)
	}
	if f.Schema != 1 {
		return nil, fmt.Errorf("testdata/models/fixtures/expect.json: schema %d, want 1", f.Schema)
	}
	var models []Model
	for _, x := range f.Models {
		m := Model{
			Set:             "fixtures",
			File:            x.File,
			Path:            filepath.Join(dir, filepath.FromSlash(x.File)),
			Outcome:         x.Outcome,
			Exit:            x.Exit,
			D:               -1,
			SHA256:          x.SHA256,
			RefuseKeywords:  x.RefuseKeywords,
			MessageKeywords: x.MessageKeywords,
		}
		if x.D != nil {
			m.D = *x.D
		}
		for _, df := range x.DataFiles {
			m.DataFiles = append(m.DataFiles, DataFile{
				Path:   filepath.Join(dir, filepath.FromSlash(df.File)),
				SHA256: df.SHA256,
			})
		}
		for _, n := range x.Nodes {
			node := Node{
				Name:      n.Node,
				Index:     n.NodeIndex,
				Scope:     n.Scope,
				OpType:    n.OpType,
				Action:    n.Action,
				Stage:     -1,
				Kernel:    n.Kernel,
				Keywords:  n.Keywords,
				Warn:      n.Warn,
				NoWarning: n.NoWarning,
			}
			if n.Tensor != nil {
				node.Tensor = *n.Tensor
			}
			node.Constant = n.TensorKind != nil && strings.EqualFold(*n.TensorKind, "constant")
			if n.I != nil && n.D != nil {
				node.HasDepth, node.I, node.Depth = true, *n.I, *n.D
			}
			if n.Stage != nil {
				node.Stage = *n.Stage
			}
			if n.Channels != nil {
				node.Channels = *n.Channels
			}
			if n.Multiplier != nil {
				node.Multiplier = *n.Multiplier
			}
			m.Nodes = append(m.Nodes, node)
		}
		for _, ts := range x.Tensors {
			m.Tensors = append(m.Tensors, TensorStats{Name: ts.Name, Sum: ts.Sum, SumSq: ts.SumSq, First3: ts.First3})
		}
		models = append(models, m)
	}
	return models, nil
}
