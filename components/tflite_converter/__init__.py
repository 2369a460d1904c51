"""TFLiteConverter: the blessed, pushed model as TFLite files for mobile apps."""
