"""gRPC plumbing shared by every process that dials another: channel options and dialing."""
