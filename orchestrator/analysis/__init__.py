"""What the results say, computed: folded stacks, call trees and breakdowns per host, the
fleet matrix and groups, outliers and differential profiles. Pure functions, no I/O."""
