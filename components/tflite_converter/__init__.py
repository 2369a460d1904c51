"""TFLiteCheck: the candidate model as checked TFLite files for mobile apps."""
