package app

// Sparkline is sparkline, for the external tests.
var Sparkline = sparkline
