package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/convcov/convcov-onnx/internal/testutil"
	"github.com/convcov/convcov-onnx/verify"
)

// A jsonType is a type of the README's JSON tables: string, number, bool, "array of T",
// the name of an object described by another table, and "T or null".
type jsonType struct {
	kind     string // "string", "number", "bool", "array" or "object"
	elem     *jsonType
	object   string
	nullable bool
}

type jsonField struct {
	owner    string // the table that lists it
	name     string
	typ      jsonType
	optional bool
}

// jsonSchemas reads the tables of the README's "JSON reports" section: one per object,
// under a "#### name" heading, each row a field, or "all of NAME" for another object's
// fields.
func jsonSchemas(t *testing.T) map[string][]jsonField {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## JSON reports\n")
	if start < 0 {
		t.Fatal(`README.md has no "## JSON reports" section`)
	}
	text = text[start+1:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}

	raw := map[string][][2]string{} // object: (field cell, type cell)
	var order []string
	object := ""
	row := regexp.MustCompile("^\\| (`[a-z_0-9]+`|all of [a-z]+(?: [a-z]+)*) \\|([^|]*)\\|")
	for _, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "#### "); ok {
			object = strings.TrimSpace(name)
			order = append(order, object)
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil && object != "" {
			raw[object] = append(raw[object], [2]string{strings.Trim(m[1], "`"), strings.TrimSpace(m[2])})
		}
	}

	schemas := map[string][]jsonField{}
	var resolve func(name string, depth int) []jsonField
	resolve = func(name string, depth int) []jsonField {
		if depth > 4 {
			t.Fatalf("README JSON reports: %q includes itself", name)
		}
		rows, ok := raw[name]
		if !ok {
			t.Fatalf("README JSON reports: no table for %q", name)
		}
		var fields []jsonField
		for _, r := range rows {
			if base, ok := strings.CutPrefix(r[0], "all of "); ok {
				fields = append(fields, resolve(base, depth+1)...)
				continue
			}
			typ, optional := parseJSONType(t, r[1])
			fields = append(fields, jsonField{name, r[0], typ, optional})
		}
		return fields
	}
	for _, name := range order {
		schemas[name] = resolve(name, 0)
	}
	for name, fields := range schemas {
		for _, f := range fields {
			for ty := &f.typ; ty != nil; ty = ty.elem {
				if ty.kind == "object" && schemas[ty.object] == nil {
					t.Errorf("README JSON reports: %s.%s has type %q, which has no table", name, f.name, ty.object)
				}
			}
		}
	}
	return schemas
}

func parseJSONType(t *testing.T, s string) (jsonType, bool) {
	t.Helper()
	s, optional := strings.CutSuffix(s, ", optional")
	s, nullable := strings.CutSuffix(s, " or null")
	var ty jsonType
	switch {
	case strings.HasPrefix(s, "array of "):
		elem, _ := parseJSONType(t, strings.TrimPrefix(s, "array of "))
		ty = jsonType{kind: "array", elem: &elem}
	case s == "string", s == "number", s == "bool":
		ty = jsonType{kind: s}
	case s == "":
		t.Fatalf("README JSON reports: a field without a type")
	default:
		ty = jsonType{kind: "object", object: s}
	}
	ty.nullable = nullable
	return ty, optional
}

// jsonChecker checks documents against the schemas and remembers which fields it saw.
type jsonChecker struct {
	t       *testing.T
	schemas map[string][]jsonField
	seen    map[string]bool // "table.field", by the table that lists the field
}

func (c *jsonChecker) value(path string, v any, ty jsonType) {
	c.t.Helper()
	ok := false
	switch v := v.(type) {
	case nil:
		ok = ty.nullable
	case string:
		ok = ty.kind == "string"
	case float64:
		ok = ty.kind == "number"
	case bool:
		ok = ty.kind == "bool"
	case []any:
		ok = ty.kind == "array"
		for i, e := range v {
			if ok {
				c.value(fmt.Sprintf("%s[%d]", path, i), e, *ty.elem)
			}
		}
	case map[string]any:
		ok = ty.kind == "object"
		if ok {
			c.object(path, v, ty.object)
		}
	}
	if !ok {
		c.t.Errorf("%s: got %T %v, the README says %s", path, v, v, describeType(ty))
	}
}

func (c *jsonChecker) object(path string, doc map[string]any, name string) {
	c.t.Helper()
	fields := c.schemas[name]
	documented := map[string]bool{}
	for _, f := range fields {
		documented[f.name] = true
		v, present := doc[f.name]
		if !present {
			if !f.optional {
				c.t.Errorf("%s: no %q, which the README's %q table gives as always there", path, f.name, name)
			}
			continue
		}
		c.seen[f.owner+"."+f.name] = true
		c.value(path+"."+f.name, v, f.typ)
	}
	var extra []string
	for k := range doc {
		if !documented[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		c.t.Errorf("%s: field %q is not in the README's %q table", path, k, name)
	}
}

func describeType(ty jsonType) string {
	s := ty.kind
	switch ty.kind {
	case "array":
		s = "array of " + describeType(*ty.elem)
	case "object":
		s = ty.object
	}
	if ty.nullable {
		s += " or null"
	}
	return s
}

// nanModel writes a model of one depthwise layer of 8 3×3 filters, all but one holding NaN,
// so that harvest drops 7 filters and a covariance cannot be estimated from what is left.
func nanModel(t *testing.T, dir string) string {
	t.Helper()
	w := floatWeight(-1, 8, 1, 3, 3)
	for k := range 72 {
		v := float32(math.NaN())
		if k < 9 {
			v = float32(k) - 4
		}
		binary.LittleEndian.PutUint32(w.RawData[4*k:], math.Float32bits(v))
	}
	writeFile(t, dir, "nan.onnx", dwModel(w, nil, nil))
	return filepath.Join(dir, "nan.onnx")
}

// TestJSONSchemas runs every command that reports with --json and checks each document
// against the README's "JSON reports" tables: every field the README gives as always there
// is there, with its type, and every field there is in the README. Across the runs every
// field the README lists must appear at least once, so that the tables cannot go stale.
func TestJSONSchemas(t *testing.T) {
	t.Parallel()
	schemas := jsonSchemas(t)
	c := &jsonChecker{t: t, schemas: schemas, seen: map[string]bool{}}
	root := testutil.RepoRoot(t)
	testdata := filepath.Join(root, "testdata")
	convmixer := filepath.Join(testdata, "models", "convmixer_digits_d64_l4_k9.onnx")
	external := filepath.Join(testdata, "models", "fixtures", "14a_external_one_file", "model.onnx")
	dir := t.TempDir()
	d := func(name string) string { return filepath.Join(dir, name) }
	nan := nanModel(t, dir)
	fx := newVerifyFixture(t)

	// ONNX Runtime's part of verify, where it can run.
	run := []string{"--no-run"}
	if withCgo() {
		rt, err := verify.Open(verify.Options{})
		switch {
		case err == nil:
			rt.Close()
			run = nil
		case !errors.Is(err, verify.ErrNoRuntime) || os.Getenv("CI") == "true":
			t.Fatalf("ONNX Runtime: %v", err)
		}
	}

	runs := []struct {
		args   []string
		code   int
		object string
	}{
		{[]string{"scan", filepath.Join(testdata, "cases", "07_weight_producers.onnx")}, 0, "scan"},
		{[]string{"scan", filepath.Join(testdata, "models", "fixtures", "16_nested_subgraphs.onnx")}, 0, "scan"},
		{[]string{"scan", filepath.Join(testdata, "models", "fixtures", "07b_init_as_input_ir8.onnx")}, 0, "scan"},
		{append([]string{"init", convmixer, "-o", d("init.onnx"), "--verify"}, run...), 0, "init"},
		{[]string{"init", external, "-o", d("ext.onnx")}, 0, "init"},
		{append([]string{"verify", fx.model, fx.good}, run...), 0, "verify"},
		{[]string{"verify", fx.model, fx.broken, "--no-run"}, 1, "verify"},
		{[]string{"init", convmixer, "-o", d("scaled.onnx"), "--scale", "4"}, 0, "init"},
		{[]string{"verify", convmixer, d("scaled.onnx"), "--no-run"}, 1, "verify"},
		{[]string{"cov", "--kernel", "3", "--sigma", "1", "-o", d("cov.npy")}, 0, "cov"},
		{[]string{"cov", "--kernel", "5x3", "--sigma", "0.5"}, 0, "cov"},
		{[]string{"harvest", convmixer, "-o", d("bank.npz")}, 0, "harvest"},
		{[]string{"harvest", nan, "-o", d("nan.npz")}, 0, "harvest"},
		{[]string{"harvest", "--merge", d("bank.npz"), d("nan.npz"), "-o", d("both.npz")}, 0, "harvest"},
		{[]string{"transfer", "--bank", d("bank.npz"), convmixer, "-o", d("t.onnx"), "--verify", "--no-run"}, 0,
			"transfer"},
		{[]string{"transfer", "--bank", d("bank.npz"), convmixer, "-o", d("direct.onnx"), "--direct"}, 0, "transfer"},
		{[]string{"transfer", "--bank", d("bank.npz"), external, "-o", d("text.onnx")}, 0, "transfer"},
		{[]string{"verify", convmixer, d("t.onnx"), "--bank", d("bank.npz"), "--no-run"}, 0, "verify"},
		{[]string{"plot", convmixer, "-o", d("a.png"), "--size", "40"}, 0, "plot"},
		{[]string{"plot", filepath.Join(testdata, "models", "fixtures", "05_weight_paths.onnx"), "-o", d("b.png"),
			"--size", "40"}, 0, "plot"},
		{[]string{"plot", d("both.npz"), "-o", d("c.png"), "--size", "40"}, 0, "plot"},
		{[]string{"plot", "--closed-form", "--kernel", "5", "--layers", "2", "-o", d("d.png")}, 0, "plot"},
		{[]string{"plot", "--closed-form", "--kernel", "5", "--sigma", "1", "-o", d("e.png")}, 0, "plot"},
		{[]string{"plot", "--filters", convmixer, d("init.onnx"), "-o", d("f.png"), "--size", "40"}, 0, "plot"},
	}
	for _, r := range runs {
		args := append(r.args, "--json")
		code, stdout, stderr := runCLI(t, args...)
		if code != r.code {
			t.Fatalf("%s: exit status %d, want %d\n%s", strings.Join(args, " "), code, r.code, stderr)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
			t.Fatalf("%s: not one JSON document: %v\n%s", strings.Join(args, " "), err, stdout)
		}
		if doc["version"] != float64(reportVersion) || doc["command"] != r.args[0] {
			t.Errorf("%s: version %v, command %v; want %d and %q",
				strings.Join(args, " "), doc["version"], doc["command"], reportVersion, r.args[0])
		}
		c.object(r.args[0], doc, r.object)
	}

	// Every documented field showed up somewhere.
	var unseen []string
	for name, fields := range schemas {
		for _, f := range fields {
			if f.owner != name {
				continue // counted with the table that lists it
			}
			key := name + "." + f.name
			if c.seen[key] || (run != nil && (name == "output" || key == "verify.runtime")) {
				continue
			}
			unseen = append(unseen, key)
		}
	}
	slices.Sort(unseen)
	if len(unseen) > 0 {
		t.Errorf("fields in the README's JSON tables that no command printed: %s", strings.Join(unseen, ", "))
	}
}
