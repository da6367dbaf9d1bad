package legoenv

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `Name = "Example"
Description = ''''''
Example = '''
[Configuration.Credentials]
NOT_A_KEY = "inside a multi-line string"
'''

Additional = '''
## Description
[Configuration]
'''

[Configuration]
  [Configuration.Credentials]
    EX_TOKEN = "API token"
    'Application Default Credentials' = "prose, not a variable"
  [Configuration.Additional]
    EX_TTL = "The TTL (Default: 60)"
    TF_VAR_region = "lower-case names exist"

[Links]
  API = "https://example.com"
`

func TestDocumentedNames(t *testing.T) {
	names, err := documentedNames(sample)
	require.NoError(t, err)
	assert.Equal(t, []string{"EX_TOKEN", "EX_TTL", "TF_VAR_region"}, names)

	_, err = documentedNames("[Configuration.Credentials]\n  this is not toml\n")
	assert.ErrorContains(t, err, "expected KEY")
	_, err = documentedNames("[Configuration.Credentials]\n  X-Y = \"dash\"\n")
	assert.ErrorContains(t, err, "not an environment variable name")
	_, err = documentedNames("Example = '''\nnever closed\n")
	assert.ErrorContains(t, err, "unterminated")
}
