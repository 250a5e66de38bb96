package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// TestComposeCommands parses every redbandit command of compose.yml with the
// real CLI (actions stubbed out), so a renamed flag or subcommand breaks
// this test rather than a deployment. No Docker engine runs here: this, and
// the YAML itself parsing, is what is checked of the compose file.
func TestComposeCommands(t *testing.T) {
	data, err := os.ReadFile("../../compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("compose.yml: %v", err)
	}
	checked := 0
	for name, svc := range compose.Services {
		if svc.Image != "redbandit:local" {
			continue
		}
		app := newApp()
		var called string
		var stub func(cmds []*cli.Command)
		stub = func(cmds []*cli.Command) {
			for _, c := range cmds {
				c := c
				if c.Action != nil {
					c.Action = func(*cli.Context) error { called = c.Name; return nil }
				}
				stub(c.Subcommands)
			}
		}
		stub(app.Commands)
		app.Before = nil
		for k, v := range svc.Environment {
			if strings.HasPrefix(k, "REDBANDIT_") {
				t.Setenv(k, os.Expand(v, func(string) string { return "x" }))
			}
		}
		if err := app.RunContext(context.Background(), append([]string{"redbandit"}, svc.Command...)); err != nil || called == "" {
			t.Errorf("service %s: %v: %v (ran %q)", name, svc.Command, err, called)
		}
		checked++
	}
	if checked < 6 {
		t.Fatalf("checked %d redbandit services, want the acl, datagen, scripts, bootstrap, trainer, sidecar and simulator", checked)
	}
}
