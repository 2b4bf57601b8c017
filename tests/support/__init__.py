"""What the tests share: repository paths, the device-module loader, factories, fixtures'
helpers and the docs sandbox. Test modules import from here, never from each other."""
