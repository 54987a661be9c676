"""babblelm.train"""
