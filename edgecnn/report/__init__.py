"""What people read: terminal tables, the pipeline's Markdown/HTML report and its 'What to ship'."""
