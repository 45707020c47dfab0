package app

import "github.com/spf13/cobra"

// Sparkline is sparkline, for the external tests.
var Sparkline = sparkline

// Root is the command tree, for the external tests that walk it.
func Root() *cobra.Command { return (&app{env: Env{Getenv: func(string) string { return "" }}}).root() }
