package main

import (
	"fmt"

	"github.com/zmws/zmws/curve"
	"github.com/zmws/zmws/protocol"
)

// KeygenCmd makes a CURVE key pair.
type KeygenCmd struct {
	Name string `arg:"" help:"Key name: the files are NAME.key and NAME.pub."`
	Dir  string `default:"." help:"Folder to write the files in." type:"existingdir"`
}

func (c *KeygenCmd) Run(e *env) error {
	kp, err := curve.Generate(c.Dir, c.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "wrote %s (secret, mode 0600: keep it on this machine) and %s.pub (public: give it to the broker's operator, or to clients and workers if this is the broker's)\n",
		kp.File, kp.File[:len(kp.File)-len(".key")])
	fmt.Fprintln(e.stdout, kp.Public)
	return nil
}

// KeysCmd groups key management commands.
type KeysCmd struct {
	Reload KeysReloadCmd `cmd:"" help:"Make the broker read its authorized keys again (SERVER-RELOAD; needs an admin key), as SIGHUP does."`
}

// KeysReloadCmd asks the broker to reload its keys.
type KeysReloadCmd struct{}

func (c *KeysReloadCmd) Run(e *env) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := cl.Query(e.ctx, protocol.ServerReload); err != nil {
		return fmt.Errorf("keys reload: %w", err)
	}
	fmt.Fprintln(e.stderr, "keys reloaded")
	return nil
}
