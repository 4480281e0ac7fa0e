// Package openapienum rewrites the ProviderName schema's enum of the
// gateway's OpenAPI document, in place, leaving the rest of the text as
// it is.
package openapienum

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
)

var providerName = regexp.MustCompile(`("ProviderName": \{\n(\s+)"type": "string",\n\s+"pattern": "[^"\n]*",\n)(\s+"enum": \[[^\]]*\],\n)?`)

// Write returns doc with the ProviderName enum set to names.
func Write(doc []byte, names []string) ([]byte, error) {
	m := providerName.FindSubmatchIndex(doc)
	if m == nil {
		return nil, errors.New(`no "ProviderName" schema with type and pattern`)
	}
	indent := string(doc[m[4]:m[5]])
	var b strings.Builder
	b.WriteString(indent + `"enum": [` + "\n")
	for i, n := range names {
		q, err := json.Marshal(n)
		if err != nil {
			return nil, err
		}
		b.WriteString(indent + "  " + string(q))
		if i < len(names)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString(indent + "],\n")
	out := append([]byte{}, doc[:m[3]]...)
	out = append(out, b.String()...)
	return append(out, doc[m[1]:]...), nil
}
