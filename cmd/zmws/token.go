package main

import (
	"fmt"
	"strings"

	"github.com/zmws/zmws/auth"
)

// TokenCmd manages the tokens file of zmwsd's HTTP gateway (--http-tokens).
// It works on the file only: zmwsd reads it again on SIGHUP.
type TokenCmd struct {
	Add  TokenAddCmd  `cmd:"" help:"Make a new token, add its hash to the tokens file, and print the token (only this once)."`
	List TokenListCmd `cmd:"" help:"List the tokens in a tokens file: names and rights."`
}

// TokenAddCmd makes a token.
type TokenAddCmd struct {
	Name    string   `arg:"" help:"The token's name (letters, digits, . _ - @), which zmwsd logs for its requests."`
	File    string   `required:"" env:"ZMWSD_HTTP_TOKENS" placeholder:"FILE" help:"Tokens file (zmwsd --http-tokens); made with mode 0600 if missing."`
	Service []string `sep:"none" placeholder:"PATTERN" help:"A service the token may submit to and read jobs of (glob: STR-*); repeat for more. None: every service."`
	Admin   bool     `help:"Also allow SERVER-JOBS, SERVER-ACTIVE, SERVER-QUEUE, SERVER-WORKERS, cancel and retry, on every service."`
}

func (c *TokenAddCmd) Run(e *env) error {
	token, err := auth.AddToken(c.File, c.Name, auth.Rights{Services: c.Service, Admin: c.Admin})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "token %s: its hash is in %s; the token below is shown only this once (send zmwsd SIGHUP to load it)\n", c.Name, c.File)
	_, err = fmt.Fprintln(e.stdout, token)
	return err
}

// TokenListCmd lists tokens.
type TokenListCmd struct {
	File string `required:"" env:"ZMWSD_HTTP_TOKENS" placeholder:"FILE" help:"Tokens file (zmwsd --http-tokens)."`
}

func (c *TokenListCmd) Run(e *env) error {
	ts, err := auth.LoadTokens(c.File)
	if err != nil {
		return err
	}
	list := ts.List()
	if e.cli.Output == "json" {
		type tokenJSON struct {
			Name     string   `json:"name"`
			Services []string `json:"services"` // empty: every service
			Admin    bool     `json:"admin"`
		}
		out := make([]tokenJSON, len(list))
		for i, ti := range list {
			out[i] = tokenJSON{ti.Name, ti.Rights.Services, ti.Rights.Admin}
			if out[i].Services == nil {
				out[i].Services = []string{}
			}
		}
		return writeJSON(e.stdout, out)
	}
	return table(e.stdout, []string{"NAME", "ADMIN", "SERVICES"}, len(list), func(i int) []string {
		services := "(all)"
		if len(list[i].Rights.Services) > 0 {
			services = strings.Join(list[i].Rights.Services, " ")
		}
		return []string{list[i].Name, fmt.Sprint(list[i].Rights.Admin), services}
	})
}
