package wire

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestInZones(t *testing.T) {
	zones := []string{"example.test", "team-b.example.org"}
	for name, want := range map[string]bool{
		"example.test":                        true,
		"example.test.":                       true,
		"_acme-challenge.www.Example.TEST.":   true,
		"x.team-b.example.org":                true,
		"example.org":                         false,
		"notexample.test":                     false,
		"_acme-challenge.victim.other.test.":  false,
		"example.test.evil.test":              false,
		"_acme-challenge.team-a.example.org.": false,
	} {
		assert.Equal(t, want, InZones(name, zones), name)
	}
	assert.True(t, InZones("anything.test", nil), "no zones: every name")
}
