"""Pure metric functions: tensors or arrays in, numbers out. One module per family."""
