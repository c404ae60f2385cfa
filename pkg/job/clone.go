package job

import (
	"maps"
	"slices"
	"time"
)

// Clone returns a deep copy of j: maps, slices and times are copied, so
// changing one never changes the other. Values inside params, context and
// outputs are copied when they are objects or arrays (map[string]any,
// []any, and the []string and map[string]string actions produce); other
// values are shared, as strings, numbers and booleans cannot be changed.
func (j *Job) Clone() *Job {
	c := *j
	if j.Playbook != nil {
		c.Playbook = make([]Step, len(j.Playbook))
		for i, s := range j.Playbook {
			s.Params = cloneMap(s.Params)
			c.Playbook[i] = s
		}
	}
	c.Context = cloneMap(j.Context)
	c.SubmittedContext = cloneMap(j.SubmittedContext)
	c.Reruns = slices.Clone(j.Reruns)
	if j.Results != nil {
		c.Results = make([]Result, len(j.Results))
		for i, r := range j.Results {
			r.Output = cloneValue(r.Output)
			r.CompletedAt = cloneTime(r.CompletedAt)
			c.Results[i] = r
		}
	}
	c.StartedAt = cloneTime(j.StartedAt)
	c.CompletedAt = cloneTime(j.CompletedAt)
	return &c
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = cloneValue(v)
	}
	return c
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneMap(x)
	case []any:
		if x == nil {
			return x
		}
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = cloneValue(e)
		}
		return c
	case []string:
		return slices.Clone(x)
	case map[string]string:
		return maps.Clone(x)
	}
	return v
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}
