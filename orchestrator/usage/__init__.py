"""What agent runs consume and say: Claude Code's stream-json read a line at a time, budgets, rendering."""
