"""What describes and stores a training run: its config, its checkpoint and run folder, its history."""
