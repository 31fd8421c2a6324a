package config

import "time"

// Social configures follows, the home feed, comments and likes.
type Social struct {
	FanoutThreshold  int           `yaml:"fanout_threshold" help:"follower count from which a creator's uploads are merged into feeds at read time instead of written to every follower's feed"`
	MaxCommentLength int           `yaml:"max_comment_length" help:"longest comment accepted, in characters"`
	CommentInterval  time.Duration `yaml:"comment_interval" help:"shortest time between two comments by one user"`
}

func defaultSocial() Social {
	return Social{FanoutThreshold: 10_000, MaxCommentLength: 2000, CommentInterval: 2 * time.Second}
}

func (c Social) validate() error {
	switch {
	case c.FanoutThreshold < 0:
		return keyErr("social.fanout_threshold", "must be 0 or more")
	case c.MaxCommentLength < 1 || c.MaxCommentLength > 100_000:
		return keyErr("social.max_comment_length", "must be 1..100000")
	case c.CommentInterval < 0:
		return keyErr("social.comment_interval", "must be 0 or more")
	}
	return nil
}
