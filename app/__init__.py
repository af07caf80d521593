"""The xlt Streamlit app: loads fitted models and measured tables from ``models/``; never trains."""
