"""The CNI protocol (SPEC.md 1.1.0 and CONVENTIONS.md), with no knowledge of Docker.

Modules here import only the standard library and pydantic, and pydantic only
where a configuration or result is parsed, so that VERSION stays cheap.
"""
