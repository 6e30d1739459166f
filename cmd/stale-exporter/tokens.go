package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/docker-watcher/stale-exporter/internal/auth"
)

// DefaultTokensFile is where the packages keep the tokens file.
const DefaultTokensFile = "/etc/stale-exporter/tokens.yml"

// tokenCommands make tokens: token prints an entry to append to a tokens
// file; tokens add and tokens remove edit the file in place.
type tokenCommands struct {
	token, add, remove *kingpin.CmdClause
	name, role, file   string
}

func addTokenCommands(app *kingpin.Application) *tokenCommands {
	c := &tokenCommands{}
	c.token = app.Command("token", "Make an API token: its tokens-file entry on standard output (append it: >> tokens.yml), the token itself on standard error, once.")
	c.token.Flag("name", "Name of the token, shown in the audit log.").Required().StringVar(&c.name)
	c.token.Flag("role", "Role of the token.").Required().EnumVar(&c.role, auth.RoleNames()...)
	tokens := app.Command("tokens", "Edit a tokens file; reload the exporter afterwards (SIGHUP, systemctl reload, or POST /-/reload).")
	c.add = tokens.Command("add", "Add a new token to the file (made 0600 if missing) and print the token, once.")
	c.add.Flag("file", "The tokens file.").Default(DefaultTokensFile).StringVar(&c.file)
	c.add.Flag("name", "Name of the token, shown in the audit log.").Required().StringVar(&c.name)
	c.add.Flag("role", "Role of the token.").Required().EnumVar(&c.role, auth.RoleNames()...)
	c.remove = tokens.Command("remove", "Remove a token from the file.")
	c.remove.Flag("file", "The tokens file.").Default(DefaultTokensFile).StringVar(&c.file)
	c.remove.Flag("name", "Name of the token.").Required().StringVar(&c.name)
	return c
}

func (c *tokenCommands) run(command string, stdout, stderr io.Writer) error {
	switch command {
	case c.token.FullCommand():
		return auth.WriteNewToken(stdout, stderr, c.name, auth.Role(c.role))
	case c.add.FullCommand():
		token, err := auth.AddToken(c.file, c.name, auth.Role(c.role))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Added token %s (role %s) to %s; reload the exporter to use it. The token, shown once:\n", c.name, c.role, c.file)
		_, err = fmt.Fprintln(stdout, token)
		return err
	default:
		if err := auth.RemoveToken(c.file, c.name); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stderr, "Removed token %s from %s; reload the exporter to refuse it.\n", c.name, c.file)
		return err
	}
}

// handles reports whether command is one of the token commands.
func (c *tokenCommands) handles(command string) bool {
	return command == c.token.FullCommand() || command == c.add.FullCommand() || command == c.remove.FullCommand()
}
