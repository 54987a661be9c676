"""babblelm.eval"""
