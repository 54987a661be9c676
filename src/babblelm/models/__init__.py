"""babblelm.models"""
