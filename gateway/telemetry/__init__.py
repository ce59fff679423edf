"""What the gateway tells operators about itself: logs (metrics live in metering/ for now)."""
