package rag

import (
	"context"
	"errors"
)

// Engine is a placeholder until the real implementation lands.
type Engine struct{}

func (e *Engine) ask(ctx context.Context, question string, history []Turn, onDelta func(string)) (Answer, error) {
	return Answer{}, errors.New("not implemented")
}

// Document returns one document by id, or store.ErrNotFound.
func (e *Engine) Document(ctx context.Context, docID string) (Document, error) {
	return Document{}, errors.New("not implemented")
}

// StarterQuestions returns up to n curated questions for a welcome card.
func (e *Engine) StarterQuestions(ctx context.Context, n int) ([]string, error) {
	return nil, errors.New("not implemented")
}
