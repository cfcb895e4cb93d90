package main

import (
	"context"
	"errors"
)

func (a *app) doctor(ctx context.Context, args []string) error {
	return errors.New("doctor: not implemented yet")
}
