"""The device package's own unit tests: stdlib and pytest only, Python 3.8 syntax, so
`make device-test` runs them under the devices' oldest Python too."""
