printf "Enter your name: "
read -r name
echo "Hello $name"
