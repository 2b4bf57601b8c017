"""Profiler output as the devices would send it (built or recorded) and the parse calls the
parser tests share, one module per profiler."""
