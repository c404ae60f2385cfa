package job

// Rerun returns a new pending job that runs j's playbook again from the
// context j was submitted with (OriginalContext), with the same interrupt
// policy: the job a rerun stores, before the store gives it an id and a
// creation time. It carries no results, attempts or error of j, and names
// j in RerunOf. j is not changed.
func (j *Job) Rerun() *Job {
	c := j.Clone()
	return &Job{
		Playbook:    c.Playbook,
		Context:     j.OriginalContext(),
		Results:     []Result{},
		OnInterrupt: j.OnInterrupt,
		MaxAttempts: j.MaxAttempts,
		RerunOf:     j.ID,
	}
}
