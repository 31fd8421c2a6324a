package config

import "time"

// Dispatch configures the dispatcher that routes events to the services.
type Dispatch struct {
	Workers       int           `yaml:"workers" help:"event handler goroutines per process, shared by the priority lanes (user-facing first)"`
	MaxDeliver    int           `yaml:"max_deliver" help:"failed deliveries of an event to a service before it goes to the dead-letter queue"`
	AckWait       time.Duration `yaml:"ack_wait" help:"how long a handler may run before its event is delivered again"`
	MaxJobBacklog int           `yaml:"max_job_backlog" help:"transcoding jobs waiting from which new uploads are refused with 429 and Retry-After (0: never)"`
}

func defaultDispatch() Dispatch {
	return Dispatch{Workers: 4, MaxDeliver: 5, AckWait: time.Minute, MaxJobBacklog: 500}
}

func (c Dispatch) validate() error {
	switch {
	case c.Workers < 1 || c.Workers > 256:
		return keyErr("dispatch.workers", "must be 1..256")
	case c.MaxDeliver < 1:
		return keyErr("dispatch.max_deliver", "must be 1 or more")
	case c.AckWait < time.Second:
		return keyErr("dispatch.ack_wait", "must be at least 1s")
	case c.MaxJobBacklog < 0:
		return keyErr("dispatch.max_job_backlog", "must be 0 or more")
	}
	return nil
}
