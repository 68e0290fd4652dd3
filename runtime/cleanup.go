package runtime

// cleanup is a stack of undo steps for work that must be rolled back if a
// later step fails: `defer c.Run()` and `c.Release()` once all went well.
type cleanup struct {
	steps []func()
}

// Add pushes an undo step; steps run last-in first-out.
func (c *cleanup) Add(f func()) { c.steps = append(c.steps, f) }

// Run undoes every step still on the stack.
func (c *cleanup) Run() {
	for i := len(c.steps) - 1; i >= 0; i-- {
		c.steps[i]()
	}
	c.steps = nil
}

// Release keeps the work: nothing will be undone.
func (c *cleanup) Release() { c.steps = nil }
