"""babblelm.data"""
