// Tests share libtorch's global RNG (dropout, manual_seed) and the machine's two cores: run them one at a time
// so seeded runs are reproducible and timing-insensitive.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
