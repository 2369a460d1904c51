"""ImdbExampleGen: the aclImdb dataset as a TFX ExampleGen."""
