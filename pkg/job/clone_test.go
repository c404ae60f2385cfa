package job

import (
	"reflect"
	"testing"
	"time"
)

func TestCloneIsDeep(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	orig := &Job{
		ID: "j", Status: Running, CreatedAt: now, StartedAt: &now,
		Playbook: []Step{{Name: "a", Action: "http", Params: map[string]any{"headers": map[string]any{"X": "1"}, "list": []any{"a", map[string]any{"b": 2.0}}}}},
		Context:  map[string]any{"alert": map[string]any{"id": "A-1"}, "ips": []any{"10.0.0.1"}},
		Results:  []Result{{Step: "a", Status: StepOK, Output: map[string]any{"body": []any{1.0}}, StartedAt: now, CompletedAt: &now}},
	}
	c := orig.Clone()
	if !reflect.DeepEqual(orig, c) {
		t.Fatalf("clone differs:\n%+v\n%+v", orig, c)
	}
	c.Playbook[0].Params["headers"].(map[string]any)["X"] = "changed"
	c.Playbook[0].Params["list"].([]any)[1].(map[string]any)["b"] = 3.0
	c.Context["alert"].(map[string]any)["id"] = "changed"
	c.Context["ips"].([]any)[0] = "changed"
	c.Results[0].Output.(map[string]any)["body"].([]any)[0] = 2.0
	*c.StartedAt = now.Add(time.Hour)
	*c.Results[0].CompletedAt = now.Add(time.Hour)
	c.Results = append(c.Results, Result{Step: "b"})
	want := &Job{
		ID: "j", Status: Running, CreatedAt: now, StartedAt: &now,
		Playbook: []Step{{Name: "a", Action: "http", Params: map[string]any{"headers": map[string]any{"X": "1"}, "list": []any{"a", map[string]any{"b": 2.0}}}}},
		Context:  map[string]any{"alert": map[string]any{"id": "A-1"}, "ips": []any{"10.0.0.1"}},
		Results:  []Result{{Step: "a", Status: StepOK, Output: map[string]any{"body": []any{1.0}}, StartedAt: now, CompletedAt: &now}},
	}
	if !reflect.DeepEqual(orig, want) {
		t.Errorf("changing the clone changed the original:\n%+v", orig)
	}
	if c.StartedAt == orig.StartedAt || c.Results[0].CompletedAt == orig.Results[0].CompletedAt || !now.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Error("the clone shares time pointers with the original")
	}
}
