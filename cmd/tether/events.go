package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"tether/events"
)

// eventsConfig is where the event sinks are configured: a file, and one
// webhook by flags alone.
type eventsConfig struct {
	file              string
	webhookURL        string
	webhookSecretFile string
}

func eventsFlags(fs *flag.FlagSet, e *eventsConfig) {
	fs.StringVar(&e.file, "events-config", "", "a JSON file of the sinks the audit trail is pushed to: webhooks, syslog, files (docs/events.md)")
	fs.StringVar(&e.webhookURL, "webhook-url", "", "push the audit trail to this webhook (a sink named webhook), signed with --webhook-secret-file")
	fs.StringVar(&e.webhookSecretFile, "webhook-secret-file", "", "a file holding the webhook's signing secret, whsec_ and base64 (Standard Webhooks)")
}

// webhookSink is the name of the sink --webhook-url makes.
const webhookSink = "webhook"

// load returns the configuration the flags name; none, no sinks.
func (e eventsConfig) load() (events.Config, error) {
	var cfg events.Config
	if e.file != "" {
		var err error
		if cfg, err = events.LoadConfig(e.file); err != nil {
			return cfg, err
		}
	}
	switch {
	case e.webhookURL != "":
		if e.webhookSecretFile == "" {
			return cfg, errors.New("--webhook-url needs --webhook-secret-file: webhooks are signed")
		}
		for _, s := range cfg.Sinks {
			if s.Name == webhookSink {
				return cfg, fmt.Errorf("--webhook-url makes a sink named %q, and %s has one already", webhookSink, e.file)
			}
		}
		cfg.Sinks = append(cfg.Sinks, events.Sink{
			Name: webhookSink, Type: events.TypeWebhook, URL: e.webhookURL, SecretFile: e.webhookSecretFile,
		})
	case e.webhookSecretFile != "":
		return cfg, errors.New("--webhook-secret-file goes with --webhook-url")
	}
	if err := cfg.Check(); err != nil {
		if e.file == "" {
			return cfg, fmt.Errorf("--webhook-url: %w", err)
		}
		return cfg, err
	}
	return cfg, nil
}

// eventsTest sends a test event to one sink and prints the receiver's
// answer.
func (c *cli) eventsTest(ctx context.Context, args []string) error {
	fs := c.flagSet("events test")
	var ec eventsConfig
	var sink, publicURL string
	eventsFlags(fs, &ec)
	fs.StringVar(&sink, "sink", "", "the sink to send the test event to")
	fs.StringVar(&publicURL, "public-url", "", "the server's public URL: the events' source")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if sink == "" {
		fmt.Fprintln(c.stderr, "events test: name the sink with --sink")
		return errUsage
	}
	cfg, err := ec.load()
	if err != nil {
		return err
	}
	source := cfg.Source
	if source == "" {
		source = publicURL
	}
	if source == "" {
		source = events.DefaultSource()
	}
	for _, s := range cfg.Sinks {
		if s.Name == sink {
			answer, err := events.TestSink(ctx, s, source)
			if answer != "" {
				fmt.Fprintf(c.stdout, "%s answered: %s\n", sink, answer)
			}
			if err != nil {
				return fmt.Errorf("sink %s: %w", sink, err)
			}
			if answer == "" {
				fmt.Fprintf(c.stdout, "%s: sent\n", sink)
			}
			return nil
		}
	}
	return fmt.Errorf("no sink named %q is configured (--events-config, --webhook-url)", sink)
}
